/**
 * The Redis locks holdfast's Redis store is compared with, each used the way its README shows,
 * on ioredis (which all three support), each with its own default retry timing when it waits:
 *
 *   redis-semaphore   `Mutex`: SET NX PX to acquire, a Lua compare-and-delete to release; waits by
 *                     retrying every `retryInterval` (default 10 ms)
 *   redlock           `@sesamecare-oss/redlock` on one instance: acquire and release are Lua
 *                     scripts; waits by retrying every `retryDelay` (200 ms) ± `retryJitter` (100 ms)
 *   redlock-universal `createLock` (SimpleLock): waits by retrying every `retryDelay` (100 ms)
 *
 * None of them queues: a waiter is a poller. None fences, none keeps history.
 */
import { Redis } from 'ioredis';
import { Redlock } from '@sesamecare-oss/redlock';
import { Mutex } from 'redis-semaphore';
import { createLock, IoredisAdapter } from 'redlock-universal';

/** Each anchor's default wait between attempts (with its jitter), for the hand-off's "all waiting" check. */
export const RETRY_MS = { 'redis-semaphore': 10, redlock: 300, 'redlock-universal': 100 } as const;
export type AnchorName = keyof typeof RETRY_MS;
export const ANCHORS = Object.keys(RETRY_MS) as AnchorName[];

/** Lock TTL for every anchor pair (long enough never to expire during a pair). */
const TTL_MS = 10_000;
/** Attempts for a waiting acquire: effectively "until granted" (the benchmark stops every client). */
const MANY = 1_000_000;

/** Acquires `key` (waiting when `wait`), returns its release; throws when busy and not waiting. */
export type AnchorLock = (key: string, wait: boolean) => Promise<() => Promise<void>>;

/** One anchor over one ioredis connection (the way an application shares its client). */
export function anchorLock(name: AnchorName, redis: Redis): AnchorLock {
  if (name === 'redis-semaphore') {
    return async (key, wait) => {
      const mutex = new Mutex(redis, key, {
        lockTimeout: TTL_MS, refreshInterval: 0,
        ...(wait ? { acquireTimeout: 3_600_000 } : { acquireAttemptsLimit: 1 }),
      });
      await mutex.acquire();
      return () => mutex.release();
    };
  }
  if (name === 'redlock') {
    const redlock = new Redlock([redis], { retryCount: 0 });
    return async (key, wait) => {
      const lock = await redlock.acquire([key], TTL_MS, wait ? { retryCount: MANY } : { retryCount: 0 });
      return async () => void (await lock.release());
    };
  }
  const adapter = new IoredisAdapter(redis);
  return async (key, wait) => {
    const lock = createLock({ adapter, key, ttl: TTL_MS, retryAttempts: wait ? MANY : 0, circuitBreaker: false });
    const handle = await lock.acquire();
    return async () => void (await lock.release(handle));
  };
}
