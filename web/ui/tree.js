// The lock table as a tree of key paths: `tenants/t2/db` sits under `tenants` and `tenants/t2`.
// Each node keeps the holders and the queue of its own key and counts for its whole subtree.
// Siblings sort in natural order (`t2` before `t10`). `flatten` turns the tree into the rows the
// list shows, honouring collapsed paths.

import { collator, messageOf } from './format.js';

function node(name, path, depth) {
  return { name, path, depth, children: new Map(), holders: [], waiters: [], held: 0, waiting: 0, keys: 0, sorted: null };
}

/** Lower-cased search text matches the key, the owner or the message. */
export function matches(entry, query) {
  if (!query) return true;
  return entry.key.toLowerCase().includes(query) || entry.owner.toLowerCase().includes(query) || messageOf(entry.metadata).toLowerCase().includes(query);
}

function place(root, key) {
  let at = root;
  let path = '';
  for (const segment of key.split('/')) {
    path = path ? `${path}/${segment}` : segment;
    let next = at.children.get(segment);
    if (!next) {
      next = node(segment, path, at.depth + 1);
      at.children.set(segment, next);
    }
    at = next;
  }
  return at;
}

/** The tree of `table` ({ locks, waiters }), keeping only entries that match `query`. */
export function buildTree(table, query) {
  const root = node('', '', -1);
  const q = query.trim().toLowerCase();
  for (const lock of table.locks) if (matches(lock, q)) place(root, lock.key).holders.push(lock);
  for (const waiter of table.waiters) if (matches(waiter, q)) place(root, waiter.key).waiters.push(waiter);
  count(root);
  return root;
}

function count(n) {
  n.held = n.holders.length;
  n.waiting = n.waiters.length;
  n.keys = n.holders.length || n.waiters.length ? 1 : 0;
  n.waiters.sort((a, b) => a.position - b.position);
  for (const child of n.children.values()) {
    count(child);
    n.held += child.held;
    n.waiting += child.waiting;
    n.keys += child.keys;
  }
}

export function sortedChildren(n) {
  n.sorted ??= [...n.children.values()].sort((a, b) => collator.compare(a.name, b.name));
  return n.sorted;
}

/** A node shows its own rows or children when opened. */
export const expandable = (n) => n.children.size > 0 || n.holders.length > 1 || n.waiters.length > 0;

/**
 * Rows: `{ kind: 'node', node }` for each visible node (its first holder shown on the same row),
 * `{ kind: 'holder', node, item, index }` for further shared holders, `{ kind: 'waiter', node, item }`.
 */
export function flatten(root, collapsed) {
  const rows = [];
  const walk = (n) => {
    rows.push({ kind: 'node', node: n, id: `n:${n.path}` });
    if (collapsed.has(n.path)) return;
    n.holders.forEach((item, index) => {
      if (index > 0) rows.push({ kind: 'holder', node: n, item, index, id: `h:${n.path}:${item.fence}` });
    });
    for (const item of n.waiters) rows.push({ kind: 'waiter', node: n, item, id: `w:${n.path}:${item.position}` });
    for (const child of sortedChildren(n)) walk(child);
  };
  for (const child of sortedChildren(root)) walk(child);
  return rows;
}

/** Every path with children (for "collapse all"). */
export function branchPaths(root) {
  const out = [];
  const walk = (n) => {
    if (n.path && expandable(n)) out.push(n.path);
    for (const child of n.children.values()) walk(child);
  };
  walk(root);
  return out;
}
