// Where a Postgres hand-off's time goes, seen from Node: a holder and a waiter take turns on one
// key (the waiter queued, checked with list(), then the holder releases after a random 0..3 ms),
// and every query is timed around `pool.query`. Prints the hand-off (release() called → the
// waiter's acquire returned), the release() call and its hf_release query, p50/p99 over the
// hand-offs after 100 warm-up ones, and the slowest releases with the queries they ran.
//   npm run build && node dist/bench/release-timing.js
// SAME=1: the waiter uses the holder's store object (else the other one, woken by NOTIFY);
// LISTEN=0: no LISTEN connections (the store's waiters then poll with backoff: their polls show). HOLDFAST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
// HANDOFFS (default 1500). Works in a fresh schema hf_release_<random>, dropped at the end.
import pg from 'pg';
import { openLocks, openStore, type Lease, type LockStore, type Locks } from '../src/index.js';

interface Timed {
  name: string;
  ms: number;
}

const url = process.env['HOLDFAST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const handoffs = Number(process.env['HANDOFFS'] ?? 1500);
const schema = `hf_release_${Math.random().toString(36).slice(2, 8)}`;
const queries: Timed[] = [];
/** The pool, with every `query` timed into `queries`. */
const timed = (pool: pg.Pool): pg.Pool =>
  new Proxy(pool, {
    get(target, name) {
      if (name === 'query') {
        return async (...args: unknown[]) => {
          const start = performance.now();
          const config = args[0] as string | { text: string };
          const text = typeof config === 'string' ? config : config.text;
          try {
            return await (target.query as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            queries.push({ name: /\.(hf_[a-z_]+)/.exec(text)?.[1] ?? text.slice(0, 30), ms: performance.now() - start });
          }
        };
      }
      const value: unknown = Reflect.get(target, name);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });

const pools = [new pg.Pool({ connectionString: url, max: 10 }), new pg.Pool({ connectionString: url, max: 10 })];
const stores: LockStore[] = [];
for (const pool of pools) stores.push(await openStore(url, { schema, pool: timed(pool), listen: process.env['LISTEN'] !== '0' }));
const lockses: Locks[] = await Promise.all(stores.map((store) => openLocks(store, {})));
const handoff: number[] = [];
const release: number[] = [];
const query: number[] = [];
const slowest: { ms: number; ran: Timed[] }[] = [];
const key = 'timing/key';
let holder: Lease = await lockses[0]!.acquire(key, { owner: 'first' });
for (let i = 0; i < handoffs + 100; i++) {
  const locks = process.env['SAME'] === '1' ? lockses[0]! : lockses[(i + 1) % 2]!;
  const waiting = locks.acquire(key, { owner: `waiter-${i}`, waitMs: 10_000 });
  while ((await stores[0]!.list()).waiters.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
  queries.length = 0;
  const start = performance.now();
  await holder.release();
  const released = performance.now();
  holder = await waiting;
  if (i < 100) continue;
  handoff.push(performance.now() - start);
  release.push(released - start);
  const ran = queries.slice();
  const hfRelease = ran.find((q) => q.name === 'hf_release');
  if (hfRelease) query.push(hfRelease.ms);
  slowest.push({ ms: released - start, ran });
}
const pct = (values: number[], f: number): string => {
  const sorted = [...values].sort((a, b) => a - b);
  return (sorted[Math.min(sorted.length - 1, Math.ceil(f * sorted.length) - 1)] ?? NaN).toFixed(2);
};
console.log(`${handoff.length} hand-offs (SAME=${process.env['SAME'] ?? 0} LISTEN=${process.env['LISTEN'] ?? 1}), p50 / p99 ms:`);
console.log(`  hand-off          ${pct(handoff, 0.5)} / ${pct(handoff, 0.99)}`);
console.log(`  release() call    ${pct(release, 0.5)} / ${pct(release, 0.99)}`);
console.log(`  hf_release query  ${pct(query, 0.5)} / ${pct(query, 0.99)}`);
console.log('slowest releases (ms: queries that ran meanwhile):');
for (const s of slowest.sort((a, b) => b.ms - a.ms).slice(0, 8)) {
  console.log(`  ${s.ms.toFixed(2)}: ${s.ran.map((q) => `${q.name} ${q.ms.toFixed(2)}`).join(', ')}`);
}
await holder.release();
await Promise.all(lockses.map((locks) => locks.close()));
await Promise.all(stores.map((store) => store.close()));
await pools[0]!.query(`DROP SCHEMA ${pg.escapeIdentifier(schema)} CASCADE`);
await Promise.all(pools.map((pool) => pool.end()));
