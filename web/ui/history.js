// The recent history table (newest first), filtered by the search box like the tree.

import { clock, el } from './format.js';

export function renderHistory(section, events, query) {
  const q = query.trim().toLowerCase();
  const shown = q
    ? events.filter((e) => e.owner.toLowerCase().includes(q) || (e.by ?? '').toLowerCase().includes(q) || e.resources.some((r) => r.key.toLowerCase().includes(q)))
    : events;
  const body = section.querySelector('tbody');
  body.replaceChildren(...shown.map((e) => {
    const tr = el('tr');
    const what = e.type === 'released' && e.reason && e.reason !== 'release' ? `${e.type} (${e.reason})` : e.type;
    tr.append(el('td', 'num', clock(e.at)), el('td', `type ${e.type}`, what), el('td', 'key', e.resources.map((r) => r.key).join(', ')));
    tr.append(el('td', '', e.owner), el('td', 'num', `#${e.fence}`), el('td', 'muted', e.by && e.by !== e.owner ? e.by : ''));
    return tr;
  }));
  section.querySelector('.count').textContent = String(shown.length);
  section.querySelector('.empty').hidden = shown.length > 0;
  section.querySelector('table').hidden = shown.length === 0;
}
