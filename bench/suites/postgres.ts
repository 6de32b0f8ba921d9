/**
 * `postgres`: uncontended acquire+release pairs per second and pair latency at 1 and 32
 * concurrent callers (each caller on its own key), holdfast's postgres store against a naive
 * single-table lock (`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired` + `DELETE`; same
 * durability, same pool size) and `pg_try_advisory_lock` / `pg_advisory_unlock` (not durable: a
 * reference floor). holdfast's full paths serialize operations per key root (the first `/`
 * segment) and its lean paths per key path (baseline part 9), so 32 callers are measured on 32 roots
 * and on 32 keys under one root.
 *
 * Holdfast's hand-off latency on Postgres is measured by the `handoff` suite; when that suite is
 * not part of the run, this one measures it for holdfast alone. Everything runs in fresh schemas,
 * dropped afterwards.
 */
import { queueWait, AdvisoryLock, NaivePostgresLock } from '../anchors.js';
import { compare, HOLDFAST, pick, type BenchContext } from '../harness.js';
import { dropSchema, newSchema, openTarget, POOL_SIZE, postgresVersion } from '../stores.js';
import { CallCounter } from '../counting.js';
import { handoffBudget, measureHandoff, recordReleases } from './handoff.js';

export async function postgresSuite(ctx: BenchContext): Promise<void> {
  const suite = 'postgres';
  const url = ctx.postgresUrl;
  ctx.rec.meta['postgres'] = await postgresVersion(url); // SkipError when unreachable
  const timing = pick(ctx, {
    full: { repeats: 3, warmupMs: 1000, durationMs: 3000 },
    quick: { repeats: 1, warmupMs: 300, durationMs: 800 },
    smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
  });
  const target = await openTarget(ctx, 'postgres', { poolSize: POOL_SIZE });
  const anchorSchema = newSchema(url);
  let naive: NaivePostgresLock | null = null;
  let advisory: AdvisoryLock | null = null;
  try {
    const locks = await target.open();
    const naiveQueries = new CallCounter();
    const advisoryQueries = new CallCounter();
    naive = await NaivePostgresLock.open(url, anchorSchema, POOL_SIZE, naiveQueries);
    advisory = new AdvisoryLock(url, POOL_SIZE, advisoryQueries);
    const counters = [
      { metric: 'store calls/pair', counter: target.calls },
      { metric: 'SQL queries/pair', counter: target.sql! },
    ];
    const cases = [
      { name: '1 caller', callers: 1, keyOf: (w: number) => `c${w}` },
      { name: '32 callers, 32 key roots', callers: 32, keyOf: (w: number) => `c${w}` },
      { name: '32 callers, one key root', callers: 32, keyOf: (w: number) => `bench/c${w}` },
    ];
    for (const c of cases) {
      const n = naive;
      const a = advisory;
      await compare(
        ctx,
        suite,
        c.name,
        [
          {
            name: HOLDFAST,
            op: async (w) => {
              const lease = await locks.acquire(c.keyOf(w));
              await lease.release();
            },
            counters,
          },
          {
            name: 'naive-upsert',
            op: async (w) => {
              const key = c.keyOf(w);
              const owner = await n.tryAcquire(key, 30_000);
              if (owner === null) throw new Error(`naive postgres lock: ${key} busy, but nobody holds it`);
              await n.release(key, owner);
            },
            counters: [{ metric: 'SQL queries/pair', counter: naiveQueries }],
          },
          {
            name: 'advisory-lock',
            op: async (w) => {
              if (!(await a.pair(w + 1))) throw new Error('advisory lock busy, but nobody holds it');
            },
            counters: [{ metric: 'SQL queries/pair', counter: advisoryQueries }],
          },
        ],
        { ...timing, concurrency: c.callers, latency: true },
      );
    }
    if (!ctx.suites.has('handoff')) {
      for (const waiters of pick(ctx, { full: [1, 100], quick: [1, 100], smoke: [1, 3] })) {
        const caseName = `hand-off, ${waiters} waiter${waiters === 1 ? '' : 's'}`;
        const { latencies, releases } = await measureHandoff(target, queueWait, waiters, handoffBudget(ctx));
        ctx.rec.latency({ suite, case: caseName, subject: HOLDFAST }, latencies);
        recordReleases(ctx, suite, caseName, releases);
      }
    }
  } finally {
    await naive?.close().catch(() => {});
    await advisory?.close().catch(() => {});
    await target.close();
    await dropSchema(url, anchorSchema).catch(() => {});
  }
}
