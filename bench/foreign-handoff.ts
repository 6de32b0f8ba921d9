/**
 * Hand-off latency for lock clients that are not holdfast's `Locks` (etcd's Lock service, the
 * Redis libraries) and for holdfast side by side with them: `waiters + 1` clients loop on one
 * key; a holder releases only once `subject.queued` says every other client is waiting, and a
 * sample is the time from just before `release()` to the moment the next holder's `lock()`
 * returns. A client that released waits for the next grant before it asks again, so a poller
 * never barges back in (a queue would not let it anyway). The first `budget.warmup` hand-offs are
 * not measured.
 */
import { randomBytes } from 'node:crypto';
import type { Locks } from '../src/index.js';
import { HOLDFAST, Notifier } from './harness.js';

export interface HandoffClient {
  /** Waits for the lock; returns its release. */
  lock(key: string): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface HandoffSubject {
  name: string;
  open(i: number): Promise<HandoffClient>;
  /** How many clients are queued (or, for a poller, have tried and are waiting to retry) behind the holder of `key`. */
  queued(key: string): Promise<number>;
}

export interface ForeignHandoffBudget {
  warmup: number;
  samples: number;
  timeMs: number;
}

export async function measureForeignHandoff(subject: HandoffSubject, waiters: number, budget: ForeignHandoffBudget): Promise<number[]> {
  const key = `bench-handoff/${randomBytes(5).toString('hex')}`;
  const clients = await Promise.all(Array.from({ length: waiters + 1 }, (_, i) => subject.open(i)));
  const samples: number[] = [];
  let releasedAt: number | null = null;
  let handoffs = 0;
  /** Grants so far, and a wake-up at each. */
  let grants = 0;
  const granted = new Notifier();
  let stop = false;
  let deadline = Infinity;
  const giveUp = performance.now() + 120_000;
  const loop = async (c: HandoffClient): Promise<void> => {
    while (!stop) {
      let release: () => Promise<void>;
      try {
        release = await c.lock(key);
      } catch (error) {
        if (stop) return;
        throw error;
      }
      const grantedAt = performance.now();
      grants++;
      granted.notify();
      if (releasedAt !== null && ++handoffs > budget.warmup) samples.push(grantedAt - releasedAt);
      releasedAt = null;
      if (deadline === Infinity && handoffs >= budget.warmup) deadline = grantedAt + budget.timeMs;
      if (samples.length >= budget.samples || grantedAt > deadline || grantedAt > giveUp) stop = true;
      // Release only when every other client is queued, so the sample is a hand-off.
      while (!stop && (await subject.queued(key)) < waiters) await new Promise((r) => setTimeout(r, 1));
      if (!stop) releasedAt = performance.now();
      // After the stop, each release hands the lock to a client that then sees the stop too.
      const mine = grants;
      await release();
      while (!stop && grants === mine) await granted.next(1000);
    }
  };
  try {
    await Promise.all(clients.map(loop));
  } finally {
    stop = true;
    await Promise.allSettled(clients.map((c) => c.close()));
  }
  return samples;
}

/**
 * holdfast as a subject: client `i` is a `Locks` object of its own (owner `h<i>`, so a store
 * object and connections of its own), acquiring with `waitMs` 600 s, no renewal and `ttlMs` (the
 * default when undefined). A client counts as queued on a key from the store's `waiting` change
 * of its request (the answer that queued the ticket, which its `Locks` emits as a `change`) until
 * its `acquire` returns, so `queued` makes no store call. It used to call `list()` on every
 * check: with 100 Redis waiters that read every waiter back between two hand-offs, and its
 * garbage (13 collections in 400 hand-offs, against 3 with a cheap count) made most of the
 * measured p99 (2.1-2.3 ms with it, 0.7-0.9 ms with the cheap count).
 */
export function holdfastHandoffSubject(open: (owner: string) => Promise<Locks>, ttlMs?: number): HandoffSubject {
  /** The key each queued client waits on. */
  const waitingOn = new Map<number, string>();
  return {
    name: HOLDFAST,
    open: async (i) => {
      const owner = `h${i}`;
      const locks = await open(owner);
      let current: string | null = null;
      locks.on('change', (change) => {
        if (change.type === 'waiting' && change.owner === owner && current !== null && change.keys.includes(current)) waitingOn.set(i, current);
      });
      return {
        lock: async (key) => {
          current = key;
          try {
            const lease = await locks.acquire(key, { waitMs: 600_000, autoRenew: false, ...(ttlMs === undefined ? {} : { ttlMs }) });
            return async () => void (await lease.release());
          } finally {
            current = null;
            waitingOn.delete(i);
          }
        },
        close: () => locks.close(),
      };
    },
    queued: async (key) => {
      let n = 0;
      for (const on of waitingOn.values()) if (on === key) n++;
      return n;
    },
  };
}
