// The lock tree as a virtualized list: only the rows in view (plus a margin) are in the DOM, so
// 10,000 held locks scroll without freezing. Keyboard: the list is one tab stop
// (aria-activedescendant); arrows move, Left/Right collapse and expand, Enter opens, Space toggles.

import { clock, el, messageOf, span } from './format.js';
import { expandable, flatten } from './tree.js';

const OVERSCAN = 8;

export class LockList {
  /**
   * @param {HTMLElement} scroller the scrolling element (role tree)
   * @param {{ now(): number, sharedCount(key): number, stuck(key, heldMs): object | null, onOpen(row): void }} view
   */
  constructor(scroller, view) {
    this.scroller = scroller;
    this.view = view;
    this.spacer = el('div', 'spacer');
    this.spacer.setAttribute('role', 'presentation');
    scroller.replaceChildren(this.spacer);
    this.rows = [];
    this.root = null;
    this.collapsed = new Set();
    this.filtering = false;
    this.activeId = null;
    this.rowHeight = 0;
    this.pending = false;
    scroller.addEventListener('scroll', () => this.schedule());
    scroller.addEventListener('keydown', (e) => this.#key(e));
    scroller.addEventListener('click', (e) => this.#click(e));
    window.addEventListener('resize', () => {
      this.rowHeight = 0;
      this.schedule();
    });
  }

  setTree(root, filtering) {
    this.root = root;
    this.filtering = filtering;
    this.#reflow();
  }

  #reflow() {
    if (!this.root) return;
    this.rows = flatten(this.root, this.filtering ? new Set() : this.collapsed);
    this.render();
  }

  toggle(path, open) {
    const isOpen = this.filtering || !this.collapsed.has(path);
    if (open === isOpen) return;
    if (isOpen) this.collapsed.add(path);
    else this.collapsed.delete(path);
    this.#reflow();
  }

  collapseAll(paths) {
    this.collapsed = new Set(paths);
    this.#reflow();
  }

  expandAll() {
    this.collapsed.clear();
    this.#reflow();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  #height() {
    if (!this.rowHeight) this.rowHeight = parseFloat(getComputedStyle(this.scroller).getPropertyValue('--row-h')) || 36;
    return this.rowHeight;
  }

  render() {
    const h = this.#height();
    // The height first: reading scrollTop then gives the position clamped to the new length (a
    // filter that shortens the list while scrolled far down still shows its rows at once).
    this.spacer.style.height = `${this.rows.length * h}px`;
    const top = Math.min(this.scroller.scrollTop, Math.max(0, this.rows.length * h - this.scroller.clientHeight));
    const first = Math.max(0, Math.floor(top / h) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + this.scroller.clientHeight) / h) + OVERSCAN);
    const now = this.view.now();
    const out = [];
    for (let i = first; i < last; i++) out.push(this.#row(this.rows[i], i, h, now));
    this.spacer.replaceChildren(...out);
    const active = this.activeIndex();
    if (active === -1) this.scroller.removeAttribute('aria-activedescendant');
    else this.scroller.setAttribute('aria-activedescendant', domId(this.rows[active]));
  }

  activeIndex() {
    if (this.activeId === null) return -1;
    return this.rows.findIndex((r) => r.id === this.activeId);
  }

  #row(row, index, h, now) {
    const div = el('div', `row ${row.kind}`);
    div.id = domId(row);
    div.dataset.index = String(index);
    div.setAttribute('role', 'treeitem');
    div.setAttribute('aria-level', String(row.node.depth + 1));
    div.style.top = `${index * h}px`;
    if (row.id === this.activeId) div.classList.add('active');
    div.setAttribute('aria-selected', String(row.id === this.activeId));
    const n = row.node;
    const key = el('div', 'c key');
    key.style.paddingLeft = `${8 + row.node.depth * 14 + (row.kind === 'node' ? 0 : 18)}px`;
    if (row.kind === 'node') {
      if (expandable(n)) {
        const open = this.filtering || !this.collapsed.has(n.path);
        div.setAttribute('aria-expanded', String(open));
        key.append(el('span', 'toggle', open ? '▾' : '▸'));
      } else key.append(el('span', 'toggle none'));
      key.append(el('span', 'name', n.name));
      key.title = n.path;
      if (n.children.size > 0 && n.holders.length === 0) key.append(el('span', 'muted', '/'));
      if (n.waiters.length > 0) key.append(el('span', 'badge wait', `${n.waiters.length} waiting`));
      div.append(key);
      if (n.holders.length > 0) this.#holderCells(div, n.holders[0], now);
      else div.append(el('div', 'c summary', summary(n)));
      div.setAttribute('aria-label', `${n.path}: ${summary(n)}`);
    } else if (row.kind === 'holder') {
      key.append(el('span', 'muted', `shared holder ${row.index + 1}`));
      div.append(key);
      this.#holderCells(div, row.item, now);
      div.setAttribute('aria-label', `${n.path}: holder ${row.item.owner}`);
    } else {
      const w = row.item;
      key.append(el('span', 'badge wait', `#${w.position} waiting`));
      div.append(key, mode(w, null), el('div', 'c owner', w.owner), el('div', 'c fence num', '—'));
      div.append(el('div', 'c held num', `waiting ${span(now - Date.parse(w.since))}`));
      const left = Date.parse(w.waitUntil) - now;
      div.append(el('div', `c expires num${left < 5000 ? ' soon' : ''}`, `gives up in ${span(left)}`), el('div', 'c msg', messageOf(w.metadata)));
      div.setAttribute('aria-label', `${n.path}: waiter number ${w.position}, ${w.owner}`);
    }
    return div;
  }

  #holderCells(div, lock, now) {
    const shared = lock.mode === 'shared' && lock.limit != null ? `${this.view.sharedCount(lock.key)} of ${lock.limit}` : null;
    const held = now - Date.parse(lock.acquiredAt);
    const left = Date.parse(lock.expiresAt) - now;
    const heldCell = el('div', 'c held num', span(held));
    heldCell.title = `held since ${clock(lock.acquiredAt)}`;
    const msg = el('div', 'c msg', messageOf(lock.metadata));
    const stuck = this.view.stuck(lock.key, held);
    if (stuck) {
      const badge = el('span', 'badge stuck', 'stuck?');
      badge.title = `held ${span(held)}; leases of ${stuck.of} usually last ${span(stuck.medianMs)} (median of ${stuck.samples})`;
      msg.prepend(badge);
    }
    div.append(mode(lock, shared), el('div', 'c owner', lock.owner), el('div', 'c fence num', `#${lock.fence}`), heldCell);
    div.append(el('div', `c expires num${left < 5000 ? ' soon' : ''}`, left > 0 ? span(left) : 'expiring'), msg);
  }

  #move(index) {
    if (this.rows.length === 0) return;
    const i = Math.max(0, Math.min(this.rows.length - 1, index));
    this.activeId = this.rows[i].id;
    const h = this.#height();
    const top = i * h;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + h > this.scroller.scrollTop + this.scroller.clientHeight) this.scroller.scrollTop = top + h - this.scroller.clientHeight;
    this.render();
  }

  #key(e) {
    const i = this.activeIndex();
    const row = this.rows[i];
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / this.#height()) - 1);
    const handled = {
      ArrowDown: () => this.#move(i + 1),
      ArrowUp: () => this.#move(i === -1 ? 0 : i - 1),
      PageDown: () => this.#move(i + page),
      PageUp: () => this.#move(i - page),
      Home: () => this.#move(0),
      End: () => this.#move(this.rows.length - 1),
      ArrowRight: () => row?.kind === 'node' && expandable(row.node) && this.toggle(row.node.path, true),
      ArrowLeft: () => {
        if (!row) return;
        if (row.kind === 'node' && expandable(row.node) && !this.collapsed.has(row.node.path) && !this.filtering) this.toggle(row.node.path, false);
        else this.#move(this.rows.findIndex((r) => r.kind === 'node' && r.node.path === parentPath(row)));
      },
      ' ': () => row?.kind === 'node' && expandable(row.node) && this.toggle(row.node.path),
      Enter: () => row && this.#open(row),
    }[e.key];
    if (!handled) return;
    e.preventDefault();
    handled();
  }

  #open(row) {
    if (row.kind === 'node' && row.node.holders.length === 0 && row.node.waiters.length === 0) this.toggle(row.node.path);
    else this.view.onOpen(row);
  }

  #click(e) {
    const div = e.target.closest('.row');
    if (!div) return;
    const row = this.rows[Number(div.dataset.index)];
    if (!row) return;
    this.activeId = row.id;
    if (e.target.closest('.toggle') && row.kind === 'node') this.toggle(row.node.path);
    else this.#open(row);
    this.render();
  }
}

const domId = (row) => `row-${encodeURIComponent(row.id).replace(/%/g, '_')}`;

function parentPath(row) {
  if (row.kind !== 'node') return row.node.path;
  const cut = row.node.path.lastIndexOf('/');
  return cut === -1 ? null : row.node.path.slice(0, cut);
}

function mode(entry, shared) {
  const cell = el('div', 'c mode');
  const badge = el('span', `mode-badge ${entry.mode}`, shared ? `shared · ${shared}` : entry.mode);
  if (shared) badge.title = `${shared} shared holders of this key's limit`;
  cell.append(badge);
  return cell;
}

function summary(n) {
  const parts = [`${n.held} held`];
  if (n.waiting) parts.push(`${n.waiting} waiting`);
  if (n.children.size) parts.push(`${n.keys} key${n.keys === 1 ? '' : 's'}`);
  if (n.holders.length === 0 && n.waiters.length > 0) parts.unshift('not held itself');
  return parts.join(' · ');
}
