/**
 * Reads the history of a namespace from etcd: its `h/<id16>` keys, newest first, in pages of
 * HISTORY_PAGE, filtered by key and owner, from below `beforeId`. A linearizable range read.
 */
import type { HistoryEvent, HistoryQuery } from '../../model/types.js';
import { prefixEnd, type EtcdClient } from './client.js';
import { decodeHistory, type Layout } from './layout.js';

const HISTORY_PAGE = 200;
const DEFAULT_LIMIT = 100;

export async function readHistory(client: EtcdClient, layout: Layout, query: HistoryQuery, signal: AbortSignal | undefined): Promise<HistoryEvent[]> {
  const limit = Math.max(0, query.limit ?? DEFAULT_LIMIT);
  const out: HistoryEvent[] = [];
  let end: string | Buffer = query.beforeId === undefined ? prefixEnd(layout.historyPrefix) : layout.history(Math.max(0, query.beforeId));
  while (out.length < limit) {
    const page = await client.range(layout.historyPrefix, end, { limit: HISTORY_PAGE, descending: true, signal });
    for (const kv of page) {
      const event = decodeHistory(kv.value);
      if (query.owner !== undefined && event.owner !== query.owner) continue;
      if (query.key !== undefined && !event.resources.some((r) => r.key === query.key)) continue;
      out.push(event);
      if (out.length >= limit) break;
    }
    if (page.length < HISTORY_PAGE) break;
    end = page[page.length - 1]!.key;
  }
  return out;
}
