/**
 * `sqlite`: acquire+release pairs per second and pair latency on a file (WAL) with
 * `synchronous` NORMAL and FULL, holdfast's sqlite store against a naive single-table lock on
 * the same settings (better-sqlite3, one `INSERT ... ON CONFLICT ... WHERE expired` and one
 * `DELETE` per pair), sequentially and with 16 concurrent callers on keys of their own (holdfast
 * commits the calls of one event-loop turn together; the naive lock is synchronous).
 */
import { join } from 'node:path';
import { NaiveSqliteLock } from '../anchors.js';
import { compare, HOLDFAST, pick, type BenchContext } from '../harness.js';
import { openTarget, tempDir } from '../stores.js';

/** Callers at once in the concurrent case (issue 17's target: ≥ 2× the naive lock on FULL). */
const CONCURRENT = 16;

export async function sqliteSuite(ctx: BenchContext): Promise<void> {
  const suite = 'sqlite';
  const timing = pick(ctx, {
    full: { repeats: 3, warmupMs: 500, durationMs: 3000 },
    quick: { repeats: 1, warmupMs: 200, durationMs: 800 },
    smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
  });
  for (const synchronous of ['NORMAL', 'FULL'] as const) {
    const target = await openTarget(ctx, 'sqlite', { synchronous });
    const tmp = tempDir();
    const naive = new NaiveSqliteLock(join(tmp.dir, 'naive.db'), synchronous);
    try {
      const locks = await target.open();
      // Sequential, then 16 callers at once (each on its own key): holdfast's calls of one turn
      // share a transaction and its commit; the naive lock, synchronous, commits each statement.
      for (const callers of [1, CONCURRENT]) {
        await compare(
          ctx,
          suite,
          callers === 1 ? `${synchronous}, 1 key, sequential` : `${synchronous}, ${callers} concurrent callers`,
          [
            {
              name: HOLDFAST,
              op: async (w) => {
                const lease = await locks.acquire(`bench/k${w}`);
                await lease.release();
              },
              counters: [{ metric: 'store calls/pair', counter: target.calls }],
            },
            {
              name: 'naive-sqlite',
              op: async (w) => {
                const key = `bench/k${w}`;
                const owner = naive.tryAcquire(key, 30_000);
                if (owner === null) throw new Error('naive sqlite lock: busy, but nobody holds the key');
                naive.release(key, owner);
              },
            },
          ],
          { ...timing, concurrency: callers, latency: true },
        );
      }
    } finally {
      naive.close();
      tmp.remove();
      await target.close();
    }
  }
}
