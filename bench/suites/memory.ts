/**
 * `memory`: in-process acquire+release pairs per second, holdfast's memory store (default
 * options: self-renewing leases, 30 s TTL) against a Map of async-mutex `Mutex`es, on one key
 * and on 10,000 distinct keys, sequentially and with 16 concurrent callers.
 *
 * The timed runs use a `Locks` object straight on the store. Store calls per pair are counted
 * in a separate, untimed pass through the counting proxy: at 4 µs a pair the proxy's own async
 * layer and bookkeeping were a tenth of what was measured.
 */
import { openLocks, openStore } from '../../src/index.js';
import { KeyedMutex } from '../anchors.js';
import { compare, HOLDFAST, pick, type BenchContext, type Subject } from '../harness.js';
import { openTarget } from '../stores.js';

/** Pairs in each case's counting pass. */
const COUNTED_PAIRS = 2000;

const KEYS = 10_000;
const CONCURRENCY = 16;

export async function memorySuite(ctx: BenchContext): Promise<void> {
  const suite = 'memory';
  const target = await openTarget(ctx, 'memory');
  try {
    const counted = await target.open();
    const bare = await openStore('memory:');
    const locks = await openLocks(bare, { owner: 'bench', actor: 'bench-admin' });
    const mutex = new KeyedMutex();
    const keys = Array.from({ length: KEYS }, (_, i) => `bench/k${i}`);
    const timing = pick(ctx, {
      full: { repeats: 3, warmupMs: 1000, durationMs: 2000 },
      quick: { repeats: 1, warmupMs: 200, durationMs: 500 },
      smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
    });

    const pair = (keyOf: (w: number, i: number) => string, waitMs = 0): Subject[] => [
      {
        name: HOLDFAST,
        op: async (w, i) => {
          const lease = await locks.acquire(keyOf(w, i), { waitMs });
          await lease.release();
        },
      },
      {
        name: 'async-mutex',
        op: async (w, i) => {
          const release = await mutex.acquire(keyOf(w, i));
          release();
        },
      },
    ];
    /** Runs the case, then counts its store calls per pair through the proxy (`concurrency` callers, untimed). */
    const run = async (caseName: string, subjects: Subject[], concurrency: number, keyOf: (w: number, i: number) => string, waitMs = 0): Promise<void> => {
      await compare(ctx, suite, caseName, subjects, { ...timing, concurrency, latency: false });
      const before = target.calls.total;
      const perWorker = ctx.profile === 'smoke' ? 1 : Math.ceil(COUNTED_PAIRS / concurrency);
      await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
        for (let i = 0; i < perWorker; i++) await (await counted.acquire(keyOf(w, i), { waitMs })).release();
      }));
      const pairs = perWorker * concurrency;
      ctx.rec.add({ suite, case: caseName, subject: HOLDFAST, metric: 'store calls/pair', value: (target.calls.total - before) / pairs, unit: 'calls', n: pairs });
    };
    const one = (): string => 'bench/one';
    const spread = (_: number, i: number): string => keys[i % KEYS]!;
    // Each caller cycles through its own slice of the keys: no two callers ever conflict.
    const sliced = (w: number, i: number): string => keys[w + CONCURRENCY * (i % (KEYS / CONCURRENCY))]!;

    await run('1 key, sequential', pair(one), 1, one);
    await run(`${KEYS.toLocaleString('en-US')} keys, sequential`, pair(spread), 1, spread);
    await run(`${KEYS.toLocaleString('en-US')} keys, ${CONCURRENCY} concurrent`, pair(sliced), CONCURRENCY, sliced);
    // Every caller on the same key: the pairs go through the wait queue.
    await run(`1 key, ${CONCURRENCY} concurrent (queued)`, pair(one, 60_000), CONCURRENCY, one, 60_000);
    await locks.close();
  } finally {
    await target.close();
  }
}
