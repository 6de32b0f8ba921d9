/**
 * `sqlite`: acquire+release pairs per second and pair latency on a file (WAL) with
 * `synchronous` NORMAL and FULL, holdfast's sqlite store against a naive single-table lock on
 * the same settings (better-sqlite3, one `INSERT ... ON CONFLICT ... WHERE expired` and one
 * `DELETE` per pair). Sequential: both are synchronous under the hood.
 */
import { join } from 'node:path';
import { NaiveSqliteLock } from '../anchors.js';
import { compare, HOLDFAST, pick, type BenchContext } from '../harness.js';
import { openTarget, tempDir } from '../stores.js';

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
      const key = 'bench/one';
      await compare(
        ctx,
        suite,
        `${synchronous}, 1 key, sequential`,
        [
          {
            name: HOLDFAST,
            op: async () => {
              const lease = await locks.acquire(key);
              await lease.release();
            },
            counters: [{ metric: 'store calls/pair', counter: target.calls }],
          },
          {
            name: 'naive-sqlite',
            op: async () => {
              const owner = naive.tryAcquire(key, 30_000);
              if (owner === null) throw new Error('naive sqlite lock: busy, but nobody holds the key');
              naive.release(key, owner);
            },
          },
        ],
        { ...timing, concurrency: 1, latency: true },
      );
    } finally {
      naive.close();
      tmp.remove();
      await target.close();
    }
  }
}
