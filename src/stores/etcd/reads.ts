/**
 * Reading roots of an etcd namespace: the ranges that read them in one transaction, and the
 * root states (table.ts `RootState`) parsed from what those ranges returned.
 */
import { prefixEnd, type KeyValue, type TxnOp } from './client.js';
import { decodeDelay, decodeLease, decodeVersion, decodeWaiter, type Layout } from './layout.js';
import type { RootState } from './table.js';

/**
 * The ranges that read `roots` (every root when null): for each, its records, then its version
 * record (for every root: all records, then all version records).
 */
export function rangesOf(layout: Layout, roots: readonly string[] | null): TxnOp[] {
  if (roots === null) {
    return [
      { range: { key: layout.roots, rangeEnd: prefixEnd(layout.roots) } },
      { range: { key: layout.versions, rangeEnd: prefixEnd(layout.versions) } },
    ];
  }
  return roots.flatMap((root) => [
    { range: { key: layout.root(root), rangeEnd: prefixEnd(layout.root(root)) } },
    { range: { key: layout.version(root) } },
  ]);
}

/** The version record's mod revision in what `rangesOf(layout, [root])` returned (0: none yet). */
export function revisionOfOne(ranges: KeyValue[][]): number {
  return ranges[1]?.[0]?.modRevision ?? 0;
}

/**
 * The states of the roots that the ranges of `rangesOf(layout, roots)` returned: every root of
 * `roots` (empty when nothing was there), and every root found when `roots` is null.
 */
export function statesOf(layout: Layout, roots: readonly string[] | null, ranges: KeyValue[][]): Map<string, RootState> {
  const states = new Map<string, RootState>();
  const stateOf = (root: string): RootState => {
    let state = states.get(root);
    if (!state) states.set(root, (state = { revision: 0, version: null, leases: [], waiters: [], delays: [] }));
    return state;
  };
  for (const root of roots ?? []) stateOf(root);
  const records = ranges.filter((_, i) => i % 2 === 0).flat();
  const versions = ranges.filter((_, i) => i % 2 === 1).flat();
  for (const kv of versions) {
    const state = stateOf(kv.key.slice(layout.versions.length));
    state.revision = kv.modRevision;
    state.version = decodeVersion(kv.value);
  }
  for (const kv of records) {
    const record = layout.parseRecord(kv.key);
    if (record === null) continue;
    const state = stateOf(record.root);
    if (record.kind === 'l') state.leases.push(decodeLease(kv.value, kv.createRevision));
    else if (record.kind === 'w') state.waiters.push(decodeWaiter(kv.value, kv.createRevision));
    else state.delays.push(decodeDelay(kv.value, kv.createRevision));
  }
  return states;
}
