// Admin actions: force-release a key, release every lease of an owner. Each asks for a
// confirmation that lists what will end; a refusal shows the server's reason. Only an admin token
// (or a server without tokens, where everyone on loopback is admin) gets enabled buttons; others
// see why the buttons are disabled.

import { api, session } from './api.js';
import { el, span } from './format.js';

/** `{ ok, why }`: may this tab's token run admin actions? */
export function adminRight() {
  const who = session.who;
  if (who?.admin) return { ok: true, why: '' };
  if (who) return { ok: false, why: `Needs an admin token: the token "${who.name}" is not one.` };
  return { ok: false, why: 'Needs an admin token: enter one above.' };
}

/** A button for an admin action, disabled with the reason when this token may not. */
export function actionButton(label, onClick) {
  const wrap = el('span', 'action');
  const button = el('button', 'danger', label);
  button.type = 'button';
  button.dataset.focus = `action:${label}`;
  const right = adminRight();
  button.disabled = !right.ok;
  button.addEventListener('click', onClick);
  wrap.append(button);
  if (!right.ok) {
    button.title = right.why;
    wrap.append(el('span', 'why', right.why));
  }
  return wrap;
}

/**
 * Shows the confirmation dialog; `run()` performs the call and returns the sentence shown after
 * success. Resolves true when the action was carried out.
 */
function confirmDialog({ title, lines, note, confirmLabel, run, onDone }) {
  const dialog = document.getElementById('confirm');
  const body = dialog.querySelector('.body');
  const error = dialog.querySelector('.error');
  const ok = dialog.querySelector('.ok');
  const cancel = dialog.querySelector('.cancel');
  dialog.querySelector('h3').textContent = title;
  const list = el('ul');
  for (const line of lines) list.append(el('li', '', line));
  body.replaceChildren(...(lines.length ? [el('p', '', 'This ends:'), list] : []), el('p', 'muted', note));
  error.hidden = true;
  error.textContent = '';
  ok.hidden = false;
  ok.disabled = false;
  ok.textContent = confirmLabel;
  cancel.textContent = 'Cancel';
  const opener = document.activeElement;
  cancel.onclick = () => dialog.close();
  ok.onclick = async () => {
    ok.disabled = true;
    try {
      const said = await run();
      dialog.close();
      onDone(said);
    } catch (failure) {
      error.hidden = false;
      error.textContent = `Refused${failure.code ? ` (${failure.code})` : ''}: ${failure.message}`;
      ok.hidden = true;
      cancel.textContent = 'Close';
      cancel.focus();
    }
  };
  // The opener may have been rebuilt meanwhile (the table changed): focus its successor then.
  const focusKey = opener?.dataset?.focus;
  dialog.onclose = () => {
    const back = opener?.isConnected ? opener : focusKey ? document.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`) : null;
    back?.focus();
  };
  dialog.showModal();
  cancel.focus();
}

const leaseLine = (lock, now) => `lease #${lock.fence} of ${lock.owner} (${lock.mode}, held ${span(now - Date.parse(lock.acquiredAt))})`;

/** Force-release `key`: every lease holding it ends now. */
export function confirmForce(key, table, now, onDone) {
  const holders = table.locks.filter((l) => l.key === key);
  const queued = table.waiters.filter((w) => w.key === key).length;
  confirmDialog({
    title: `Force-release ${key}?`,
    lines: holders.map((l) => leaseLine(l, now)),
    note: `${holders.length ? 'Their holders lose every key of those leases now and are told by LEASE_LOST when they renew.' : 'Nobody holds this key right now.'}${queued ? ` ${queued} waiting request${queued === 1 ? '' : 's'} may be granted next.` : ''} Recorded in history with your token's name.`,
    confirmLabel: 'Force-release',
    run: async () => {
      const { released } = await api('DELETE', `/v1/locks/${encodeURIComponent(key)}`);
      return `Force-released ${key}: ${released} lease${released === 1 ? '' : 's'} ended.`;
    },
    onDone,
  });
}

/** Release every lease of `owner`. */
export function confirmReleaseOwner(owner, table, now, onDone) {
  const byFence = new Map();
  for (const l of table.locks) if (l.owner === owner) byFence.set(l.fence, [...(byFence.get(l.fence) ?? []), l]);
  const lines = [...byFence.values()].map((locks) => `${leaseLine(locks[0], now)}: ${locks.map((l) => l.key).join(', ')}`);
  confirmDialog({
    title: `Release every lease of ${owner}?`,
    lines,
    note: `${byFence.size} lease${byFence.size === 1 ? '' : 's'} end${byFence.size === 1 ? 's' : ''} now, as after a crash of that owner. Recorded in history with your token's name.`,
    confirmLabel: 'Release owner',
    run: async () => {
      const { released } = await api('DELETE', `/v1/owners/${encodeURIComponent(owner)}/leases`);
      return `Released ${released} lease${released === 1 ? '' : 's'} of ${owner}.`;
    },
    onDone,
  });
}
