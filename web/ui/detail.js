// The detail panel: a lease (by its fence: all its keys, metadata, renewals seen, the queue and
// history of its keys) or a key (its holders, queue and history). Times tick every second without
// rebuilding the panel, so keyboard focus inside it stays put.

import { api } from './api.js';
import { actionButton, confirmForce, confirmReleaseOwner } from './actions.js';
import { clock, dateTime, el, messageOf, put, span } from './format.js';

const HISTORY_KEYS = 4;

export class DetailPanel {
  /**
   * @param {HTMLElement} panel
   * @param {{ table(): object, now(): number, renewals(fence): object | null, stuck(key, heldMs): object | null, sharedCount(key): number, done(sentence): void, closed(): void }} view
   */
  constructor(panel, view) {
    this.panel = panel;
    this.view = view;
    this.target = null;
    this.history = [];
    this.historyFor = '';
    this.historySeq = 0;
    this.loading = '';
    // Escape closes the panel from anywhere, unless a confirmation dialog is open (it closes first).
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.open && !document.querySelector('dialog[open]')) this.close();
    });
  }

  get open() {
    return this.target !== null;
  }

  showLease(fence) {
    // Its keys are remembered, so that its history is still shown after the lease ended.
    this.#show({ kind: 'lease', fence, keys: this.view.table().locks.filter((l) => l.fence === fence).map((l) => l.key) });
  }

  showKey(key) {
    this.#show({ kind: 'key', key });
  }

  #show(target) {
    this.target = target;
    this.history = [];
    this.historyFor = '';
    this.loading = '';
    this.historySeq++;
    this.panel.hidden = false;
    this.render();
    this.panel.querySelector('h2')?.focus();
  }

  close() {
    if (!this.target) return;
    this.target = null;
    this.panel.hidden = true;
    this.view.closed();
  }

  /** Rebuilds the panel from the current table, keeping focus on the same control; `fresh`: the table changed, read the history again. */
  render(fresh = false) {
    if (!this.target) return;
    const focused = this.panel.contains(document.activeElement) ? document.activeElement.dataset.focus : undefined;
    const table = this.view.table();
    const content = this.target.kind === 'lease' ? this.#lease(table) : this.#key(table);
    this.panel.replaceChildren(...content);
    if (focused) this.panel.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
    void this.#loadHistory(table, fresh);
    this.tick();
  }

  /** Updates the ticking times. */
  tick() {
    const now = this.view.now();
    for (const node of this.panel.querySelectorAll('[data-until]')) {
      const left = Date.parse(node.dataset.until) - now;
      node.textContent = left > 0 ? span(left) : 'ended or expiring';
      node.classList.toggle('soon', left < 5000);
    }
    for (const node of this.panel.querySelectorAll('[data-since]')) node.textContent = span(now - Date.parse(node.dataset.since));
  }

  #header(title, subtitle) {
    const close = el('button', 'close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Close the details');
    close.dataset.focus = 'close';
    close.addEventListener('click', () => this.close());
    const h = el('h2', '', title);
    h.tabIndex = -1;
    h.id = 'detail-title';
    return put(el('div', 'detail-head'), h, el('span', 'muted', subtitle), close);
  }

  #lease(table) {
    const { fence } = this.target;
    const locks = table.locks.filter((l) => l.fence === fence);
    const out = [];
    if (locks.length === 0) {
      out.push(this.#header(`Lease #${fence}`, 'ended'), el('p', 'note', `This lease is no longer held (released, expired or forced). The history of its key${this.target.keys.length === 1 ? '' : 's'} is below.`));
      out.push(this.#historyBlock());
      return out;
    }
    const first = locks[0];
    this.target.keys = locks.map((l) => l.key);
    out.push(this.#header(`Lease #${fence}`, first.owner));
    const renewals = this.view.renewals(fence);
    const facts = dl([
      ['Owner', first.owner],
      ['Fence', `#${fence}`],
      ['Held since', `${dateTime(first.acquiredAt)} (`, ticking('since', first.acquiredAt), ')'],
      ['Expires in', ticking('until', first.expiresAt), ` (at ${clock(first.expiresAt)})`],
      ['Renewals', renewals ? `${renewals.count} seen by this page since ${clock(renewals.firstSeen)}${renewals.count ? `, last at ${clock(renewals.lastAt)}` : ''}` : 'none seen yet'],
    ]);
    out.push(facts);
    const stuck = this.view.stuck(first.key, this.view.now() - Date.parse(first.acquiredAt));
    if (stuck) out.push(el('p', 'note stuck', `Stuck? Leases of ${stuck.of} usually last ${span(stuck.medianMs)} (median of ${stuck.samples} in the history); this one is held far longer.`));
    if (messageOf(first.metadata)) out.push(el('p', 'message', messageOf(first.metadata)));
    out.push(el('h3', '', `Keys (${locks.length})`));
    const keys = el('ul', 'keys');
    for (const lock of locks) {
      const li = el('li');
      const link = el('button', 'link', lock.key);
      link.type = 'button';
      link.dataset.focus = `key:${lock.key}`;
      link.addEventListener('click', () => this.showKey(lock.key));
      const use = lock.mode === 'shared' && lock.limit != null ? ` · ${this.view.sharedCount(lock.key)} of ${lock.limit}` : '';
      li.append(link, el('span', 'muted', ` ${lock.mode}${use}`));
      li.append(this.#queue(table, lock.key));
      li.append(actionButton(`Force-release ${lock.key}`, () => confirmForce(lock.key, this.view.table(), this.view.now(), (s) => this.view.done(s))));
      keys.append(li);
    }
    out.push(keys);
    out.push(el('h3', '', 'Metadata'), el('pre', 'metadata', JSON.stringify(first.metadata ?? {}, null, 2)));
    out.push(put(el('div', 'actions'), actionButton(`Release every lease of ${first.owner}`, () => confirmReleaseOwner(first.owner, this.view.table(), this.view.now(), (s) => this.view.done(s)))));
    out.push(this.#historyBlock());
    return out;
  }

  #key(table) {
    const { key } = this.target;
    const holders = table.locks.filter((l) => l.key === key);
    const out = [this.#header(key, holders.length ? `${holders.length} holder${holders.length === 1 ? '' : 's'}` : 'not held')];
    out.push(el('h3', '', 'Held by'));
    if (holders.length === 0) out.push(el('p', 'muted', 'Nobody.'));
    const list = el('ul', 'keys');
    for (const lock of holders) {
      const li = el('li');
      const link = el('button', 'link', `lease #${lock.fence}`);
      link.type = 'button';
      link.dataset.focus = `lease:${lock.fence}`;
      link.addEventListener('click', () => this.showLease(lock.fence));
      li.append(link, el('span', '', ` ${lock.owner} · ${lock.mode}${lock.limit != null ? ` · ${this.view.sharedCount(key)} of ${lock.limit}` : ''} · expires in `), ticking('until', lock.expiresAt));
      if (messageOf(lock.metadata)) li.append(el('div', 'muted', messageOf(lock.metadata)));
      list.append(li);
    }
    out.push(list);
    out.push(el('h3', '', 'Queue'), this.#queue(table, key, true));
    out.push(put(el('div', 'actions'), actionButton(`Force-release ${key}`, () => confirmForce(key, this.view.table(), this.view.now(), (s) => this.view.done(s)))));
    out.push(this.#historyBlock());
    return out;
  }

  #queue(table, key, always = false) {
    const waiters = table.waiters.filter((w) => w.key === key).sort((a, b) => a.position - b.position);
    if (waiters.length === 0) return always ? el('p', 'muted', 'Nobody waiting.') : el('span');
    const t = el('table', 'queue');
    t.append(el('caption', 'muted', `Queue of ${key}`));
    const head = el('tr');
    for (const h of ['#', 'Owner', 'Mode', 'Waiting', 'Gives up in']) head.append(el('th', '', h));
    t.append(head);
    for (const w of waiters) {
      const tr = el('tr');
      tr.append(el('td', 'num', `#${w.position}`), el('td', '', w.owner), el('td', '', w.mode));
      tr.append(put(el('td', 'num'), ticking('since', w.since)), put(el('td', 'num'), ticking('until', w.waitUntil)));
      t.append(tr);
    }
    return t;
  }

  #historyBlock() {
    const box = el('div', 'history-block');
    box.append(el('h3', '', 'History'));
    if (!this.historyFor) box.append(el('p', 'muted', 'Loading…'));
    else if (this.history.length === 0) box.append(el('p', 'muted', 'No events.'));
    const t = el('table', 'queue');
    for (const e of this.history.slice(0, 30)) {
      const tr = el('tr', this.target?.kind === 'lease' && e.fence === this.target.fence ? 'mine' : '');
      const what = e.type === 'released' && e.reason && e.reason !== 'release' ? `${e.type} (${e.reason})` : e.type;
      tr.append(el('td', 'num', clock(e.at)), el('td', `type ${e.type}`, what), el('td', '', `#${e.fence} ${e.owner}`), el('td', 'muted', e.by && e.by !== e.owner ? `by ${e.by}` : ''));
      t.append(tr);
    }
    box.append(t);
    return box;
  }

  async #loadHistory(table, force) {
    const target = this.target;
    const keys = (target.kind === 'key' ? [target.key] : target.keys).slice(0, HISTORY_KEYS);
    const want = `${target.kind}:${target.key ?? target.fence}:${keys.join('\n')}`;
    if (!force && (this.historyFor === want || this.loading === want)) return;
    this.loading = want;
    const seq = ++this.historySeq;
    let events = [];
    try {
      const answers = await Promise.all(keys.map((k) => api('GET', `/v1/history?key=${encodeURIComponent(k)}&limit=30`)));
      const seen = new Set();
      events = answers.flatMap((a) => a.events).filter((e) => !seen.has(e.id) && seen.add(e.id)).sort((a, b) => b.id - a.id);
    } catch {
      // The table's own refresh reports an unreachable server.
    }
    if (seq !== this.historySeq || this.target !== target) return;
    this.loading = '';
    this.history = events;
    this.historyFor = want;
    this.panel.querySelector('.history-block')?.replaceWith(this.#historyBlock());
  }
}

function ticking(kind, iso) {
  const node = el('span', 'num');
  node.dataset[kind] = iso;
  return node;
}

function dl(rows) {
  const list = el('dl', 'facts');
  for (const [term, ...parts] of rows) list.append(el('dt', '', term), put(el('dd'), ...parts));
  return list;
}
