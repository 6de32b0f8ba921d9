/**
 * `memory`: in-process acquire+release pairs per second, holdfast's memory store (default
 * options: self-renewing leases, 30 s TTL) against a Map of async-mutex `Mutex`es, on one key
 * and on 10,000 distinct keys, sequentially and with 16 concurrent callers.
 */
import { KeyedMutex } from '../anchors.js';
import { compare, HOLDFAST, pick, type BenchContext, type Subject } from '../harness.js';
import { openTarget } from '../stores.js';

const KEYS = 10_000;
const CONCURRENCY = 16;

export async function memorySuite(ctx: BenchContext): Promise<void> {
  const suite = 'memory';
  const target = await openTarget(ctx, 'memory');
  try {
    const locks = await target.open();
    const mutex = new KeyedMutex();
    const keys = Array.from({ length: KEYS }, (_, i) => `bench/k${i}`);
    const timing = pick(ctx, {
      full: { repeats: 3, warmupMs: 1000, durationMs: 2000 },
      quick: { repeats: 1, warmupMs: 200, durationMs: 500 },
      smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
    });
    const calls = [{ metric: 'store calls/pair', counter: target.calls }];

    const pair = (keyOf: (w: number, i: number) => string, waitMs = 0): Subject[] => [
      {
        name: HOLDFAST,
        op: async (w, i) => {
          const lease = await locks.acquire(keyOf(w, i), { waitMs });
          await lease.release();
        },
        counters: calls,
      },
      {
        name: 'async-mutex',
        op: async (w, i) => {
          const release = await mutex.acquire(keyOf(w, i));
          release();
        },
      },
    ];
    const run = (caseName: string, subjects: Subject[], concurrency: number): Promise<void> =>
      compare(ctx, suite, caseName, subjects, { ...timing, concurrency, latency: false });

    await run('1 key, sequential', pair(() => 'bench/one'), 1);
    await run(`${KEYS.toLocaleString('en-US')} keys, sequential`, pair((_, i) => keys[i % KEYS]!), 1);
    // Each caller cycles through its own slice of the keys: no two callers ever conflict.
    await run(
      `${KEYS.toLocaleString('en-US')} keys, ${CONCURRENCY} concurrent`,
      pair((w, i) => keys[w + CONCURRENCY * (i % (KEYS / CONCURRENCY))]!),
      CONCURRENCY,
    );
    // Every caller on the same key: the pairs go through the wait queue.
    await run(`1 key, ${CONCURRENCY} concurrent (queued)`, pair(() => 'bench/one', 60_000), CONCURRENCY);
  } finally {
    await target.close();
  }
}
