/**
 * The history of a namespace in etcd: `h/<time15>/<n>` keys, one per event. Ids come from the
 * create revision of each event's key (layout.ts), so they increase in commit order across all
 * roots. Reading sorts by create revision in etcd (below `beforeId`'s revision when paging) and
 * filters here; pruning deletes the oldest keys beyond `historyLimit`, by key (store time) order.
 */
import type { HistoryEvent, HistoryQuery } from '../../model/types.js';
import { prefixEnd, type EtcdClient } from './client.js';
import { decodeHistory, REVISION_SLOTS, type Layout } from './layout.js';

const DEFAULT_LIMIT = 100;

export async function readHistory(client: EtcdClient, layout: Layout, query: HistoryQuery, signal: AbortSignal | undefined): Promise<HistoryEvent[]> {
  const limit = Math.max(0, query.limit ?? DEFAULT_LIMIT);
  const maxRevision = query.beforeId === undefined ? 0 : Math.max(1, Math.floor((query.beforeId - 1) / REVISION_SLOTS));
  const kvs = await client.rangeByCreate(layout.historyPrefix, prefixEnd(layout.historyPrefix), maxRevision, signal);
  const events = kvs.map((kv) => decodeHistory(kv.value, kv.createRevision)).filter((event) =>
    (query.beforeId === undefined || event.id < query.beforeId) &&
    (query.owner === undefined || event.owner === query.owner) &&
    (query.key === undefined || event.resources.some((r) => r.key === query.key)));
  return events.sort((a, b) => b.id - a.id).slice(0, limit);
}

/** Deletes the oldest events beyond `historyLimit` (by store time). */
export async function pruneHistory(client: EtcdClient, layout: Layout, historyLimit: number, signal?: AbortSignal): Promise<void> {
  const end = prefixEnd(layout.historyPrefix);
  const { count } = await client.countAndNth(layout.historyPrefix, end, 1, signal);
  if (count <= historyLimit) return;
  const { nth } = await client.countAndNth(layout.historyPrefix, end, count - historyLimit, signal);
  if (nth === '') return;
  await client.txn([], [{ deleteRange: { key: layout.historyPrefix, rangeEnd: `${nth}\u0000` } }], [], signal);
}
