/**
 * A child process of the sqlite multi-process tests: `node worker.js MODE JSON`. It prints one
 * JSON object per line (`{ "event": ... }`) so the parent can follow it.
 *
 * - `mutex { db, log, iterations, owner }`: N times: acquire `k` exclusively (waiting, polling with
 *   a short backoff), append `start FENCE` and `end FENCE` to `log` around a short sleep, release.
 * - `hold { db, key, owner }`: acquire `key` at once, print `held`, release on a `release` line on
 *   stdin, print `released`.
 * - `wait { db, key, owner }`: acquire `key` waiting; print `queued`, then `granted` when it is.
 * - `open { db, key, startAt }`: at `startAt` (epoch ms) open the store (racing the migration),
 *   acquire and release `key`, print `opened`.
 * - `locks-wait { db, key, owner }`: like `wait`, but through `Locks` (the engine's own waiting),
 *   counting the store's polls; prints `queued`, then `granted` with `polls`.
 */
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { validateRequest } from '../../../src/model/request.js';
import type { LeaseRecord } from '../../../src/model/types.js';
import type { LockStore } from '../../../src/stores/store.js';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { openLocks } from '../../../src/index.js';
import { ForwardingStore } from '../../conformance/forwarding-store.js';

const print = (event: string, data: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
};

/** Acquires, waiting up to 60 s: polls the ticket with a 2..20 ms backoff until granted. */
async function acquire(store: LockStore, key: string, owner: string, onQueued?: () => void): Promise<LeaseRecord> {
  const { request } = validateRequest({ owner, resources: [key], ttlMs: 30_000 });
  const outcome = await store.acquire(request, { waitMs: 60_000, waiterTtlMs: 10_000 });
  if (outcome.status === 'granted') return outcome.lease;
  if (outcome.status === 'busy') throw new Error('busy although waiting');
  onQueued?.();
  for (let delay = 2; ; delay = Math.min(20, delay * 2)) {
    await sleep(delay);
    const polled = await store.poll(outcome.ticket);
    if (polled.status === 'granted') return polled.lease;
    if (polled.status === 'gone') throw new Error('ticket gone');
  }
}

const [mode, json] = process.argv.slice(2);
interface Args {
  db: string;
  log: string;
  iterations: number;
  owner: string;
  key: string;
  startAt: number;
}
const args = JSON.parse(json ?? '{}') as Args;

if (mode === 'mutex') {
  const store = createSqliteStore(args.db);
  for (let i = 0; i < args.iterations; i++) {
    const lease = await acquire(store, 'k', args.owner);
    appendFileSync(args.log, `start ${lease.fence} ${process.pid}\n`);
    await sleep(1 + (i % 3));
    appendFileSync(args.log, `end ${lease.fence} ${process.pid}\n`);
    if (!(await store.release(lease.id))) throw new Error(`release of fence ${lease.fence} failed`);
  }
  await store.close();
  print('done');
} else if (mode === 'hold') {
  const store = createSqliteStore(args.db);
  const { request } = validateRequest({ owner: args.owner, resources: [args.key], ttlMs: 30_000 });
  const outcome = await store.acquire(request, { waitMs: 0, waiterTtlMs: 10_000 });
  if (outcome.status !== 'granted') throw new Error(`hold: ${outcome.status}`);
  print('held', { fence: outcome.lease.fence });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'release') continue;
    const released = await store.release(outcome.lease.id);
    print('released', { released });
    break;
  }
  process.stdin.destroy();
  await store.close();
} else if (mode === 'wait') {
  const store = createSqliteStore(args.db);
  const lease = await acquire(store, args.key, args.owner, () => print('queued'));
  print('granted', { fence: lease.fence });
  await store.release(lease.id);
  await store.close();
} else if (mode === 'open') {
  await sleep(Math.max(0, args.startAt - Date.now()));
  const store = createSqliteStore(args.db);
  const lease = await acquire(store, args.key, 'opener');
  await store.release(lease.id);
  await store.close();
  print('opened', { fence: lease.fence });
} else if (mode === 'locks-wait') {
  let polls = 0;
  class Counting extends ForwardingStore {
    override poll(...args: Parameters<LockStore['poll']>): ReturnType<LockStore['poll']> {
      polls++;
      return super.poll(...args);
    }
  }
  const store = createSqliteStore(args.db);
  // A long waiter TTL: its heartbeat polls every 10 s, so any poll within the test is a poll for news.
  const locks = await openLocks(new Counting(store), { owner: args.owner, waiterTtlMs: 30_000 });
  const waiting = locks.acquire(args.key, { waitMs: 60_000, ttlMs: 30_000 });
  while ((await store.list()).waiters.length === 0) await sleep(5);
  print('queued');
  const lease = await waiting;
  print('granted', { fence: lease.fence, polls });
  await lease.release();
  await locks.close();
  await store.close();
} else {
  throw new Error(`unknown mode ${String(mode)}`);
}
