/**
 * `node dist/bench/redis-pairs.js [seconds]`: uncontended acquire+release pairs per second on the
 * shared Redis (127.0.0.1:6379), at 1 and 32 in flight (distinct keys), for holdfast's Redis
 * store and redis-semaphore's Mutex (ioredis), in one run, with the ratio. A first, standalone
 * part of the Redis suite of issue #15 (hand-off and contention cases are not written yet).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Mutex } from 'redis-semaphore';
import { openLocks } from '../src/index.js';

const URL_ = process.env['HOLDFAST_REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';
const seconds = Number(process.argv[2] ?? 3);

async function rate(inFlight: number, pair: (lane: number) => Promise<void>): Promise<number> {
  let count = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: inFlight }, async (_, lane) => {
    while (performance.now() < end) {
      await pair(lane);
      count++;
    }
  }));
  return count / seconds;
}

const prefix = `bench-${randomBytes(4).toString('hex')}`;
const locks = await openLocks(`${URL_}?prefix=${prefix}`, { owner: 'bench' });
const ioredis = new Redis(URL_);
const rows: string[] = [];
for (const inFlight of [1, 32]) {
  const holdfast = await rate(inFlight, async (lane) => {
    const lease = await locks.acquire(`k${lane}`, { ttlMs: 10_000 });
    await lease.release();
  });
  const semaphore = await rate(inFlight, async (lane) => {
    const mutex = new Mutex(ioredis, `${prefix}-sem-${lane}`, { lockTimeout: 10_000, refreshInterval: 0 });
    await mutex.acquire();
    await mutex.release();
  });
  rows.push(`${inFlight} in flight: holdfast ${holdfast.toFixed(0)} pairs/s, redis-semaphore Mutex ${semaphore.toFixed(0)} pairs/s, ratio ${(holdfast / semaphore).toFixed(2)}`);
}
console.log(rows.join('\n'));
await locks.close();
const keys = await ioredis.keys(`*${prefix}*`);
if (keys.length > 0) await ioredis.unlink(...keys);
ioredis.disconnect();
