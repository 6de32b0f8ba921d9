/**
 * Seed 000, the vRO "LockingSystem" workflow lock, with holdfast.
 *
 * The blog post's workflows guard a load balancer update with `LockingSystem.lock(id, owner)`
 * (true/false), retry every 10 s for 30 minutes, and after that release the "stale" lock by force.
 * With holdfast:
 *   1. `createLock` is a try-lock: `tryAcquire` returns a lease or null, i.e. true/false.
 *   2. A second workflow does not poll: it waits in the queue for up to 30 minutes (`waitMs`) and
 *      is granted the lock the moment the first one unlocks, milliseconds later, not on a 10 s tick.
 *   3. A workflow that died holding the lock stops renewing its lease; the store expires it when
 *      its TTL runs out and hands the lock to the next waiter with a higher fence. Nobody guesses
 *      that a lock is "stale" and nobody force-releases it.
 *   4. `removeLock(id, owner)` is vRO's `LockingSystem.unlock(id, owner)`: `releaseOwner(owner, { key })`.
 *
 * Run: `node dist/examples/vro-workflow-lock.js [STORE_URL]` (default `HOLDFAST_STORE` or `memory:`).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
// In your own code: `from 'holdfast'`.
import { LockBusyError, openLocks, type Lease, type Locks } from '../src/index.js';
import { openPeer, runAsScript, transcript } from './_support.js';

export interface VroOptions {
  /** Store URL: `memory:`, `sqlite:/path/file.db`, `postgres://...` */
  store: string;
  log?: (line: string) => void;
}

export interface VroResult {
  key: string;
  /** Workflow 1's `createLock`: true. */
  firstLocked: boolean;
  /** Workflow 2's `createLock` while workflow 1 holds the lock: false (same owner, no re-entry). */
  secondLocked: boolean;
  /** What workflow 2 was told about the holder. */
  busyHolderOwner: string | null;
  /** Workflow 1's `removeLock`: leases it ended (1). */
  unlocked: number;
  /** From workflow 1's unlock call to workflow 2 holding the lock, in ms. */
  handoffMs: number;
  firstFence: number;
  secondFence: number;
  /** The dead workflow's lease. */
  deadFence: number;
  deadTtlMs: number;
  /** When the store would expire it (store clock, ms since epoch). */
  deadExpiresAt: number;
  /** The dead workflow's own lease object self-fenced (its signal aborted) before the store expired it. */
  deadSelfFenced: boolean;
  /** The workflow that took over. */
  takeoverFence: number;
  /** When the store granted it (store clock). */
  takeoverAcquiredAt: number;
  /** How long the taking-over workflow waited in the queue, in ms. */
  takeoverWaitedMs: number;
  /** The history records the dead lease as `expired` by `expiry`, not released or forced. */
  deadEndedBy: string | null;
  /** Force-releases made during the run (0: nobody guessed "stale"). */
  forced: number;
}

export async function main(options: VroOptions): Promise<VroResult> {
  const say = transcript(options.log);
  const run = `vro-${randomBytes(3).toString('hex')}`;
  const key = `${run}/lb/SITEB-CLS-CLOUD-01`;
  const owner = 'inventory';

  const nodeA = await openLocks(options.store);
  const nodeB = await openPeer(options.store, nodeA);
  const held = new Map<Locks, Lease>();

  // The blog post's two actions, on holdfast.
  const createLock = async (locks: Locks, lockId: string, lockOwner: string): Promise<boolean> => {
    say(`[Action: createLock] Creating lock on '${lockId}' for '${lockOwner}'`);
    const lease = await locks.tryAcquire(lockId, { owner: lockOwner, metadata: { message: 'Data collection in progress' } });
    if (lease) {
      held.set(locks, lease);
      say(`[Action: createLock] Lock created for '${lockOwner}' (fence ${lease.fence})`);
      return true;
    }
    say(`[Action: createLock] Existing lock found for '${lockOwner}'`);
    return false;
  };
  const removeLock = async (locks: Locks, lockId: string, lockOwner: string): Promise<number> => {
    say(`[Action: removeLock] Removing lock on '${lockId}' for '${lockOwner}'`);
    const ended = await locks.releaseOwner(lockOwner, { key: lockId });
    say(`[Action: removeLock] Lock removed for '${lockId}' (${ended} lease ended)`);
    return ended;
  };

  try {
    // 1. Workflow 1 (on vRO node A) locks the load balancer.
    say(`[Workflow 1: Start Data Collection] store ${nodeA.store.info.kind}, key ${key}`);
    const firstLocked = await createLock(nodeA, key, owner);
    const firstFence = held.get(nodeA)?.fence ?? 0;

    // 2. Workflow 2 (node B) tries too: the same owner is not let in twice (locks are not re-entrant).
    say('[Workflow 2: Start Data Collection] Trying to create lock: attempt 1');
    const secondLocked = await createLock(nodeB, key, owner);
    let busyHolderOwner: string | null = null;
    try {
      await nodeB.acquire(key, { owner, waitMs: 0 });
    } catch (error) {
      // The busy answer says who holds the lock and for how long; no guessing needed.
      if (!(error instanceof LockBusyError)) throw error;
      busyHolderOwner = error.holders[0]?.owner ?? null;
      say(`[Workflow 2] LOCK_BUSY: ${error.message} (retry after ${error.retryAfterMs} ms)`);
    }

    // Instead of 180 attempts every 10 s, workflow 2 queues for up to 30 minutes.
    say('[Workflow 2] Waiting for the lock (up to 30 minutes, no polling)');
    let grantedAt = 0;
    const waiting = nodeB.acquire(key, { owner, waitMs: '30m' }).then((lease) => {
      grantedAt = performance.now();
      return lease;
    });

    // Workflow 1 updates the load balancer, then unlocks: vRO's LockingSystem.unlock(id, owner).
    await sleep(200);
    say('[Workflow 1] Load balancer updated');
    const unlockAt = performance.now();
    const unlocked = await removeLock(nodeA, key, owner);
    const second = await waiting;
    held.set(nodeB, second);
    const handoffMs = grantedAt - unlockAt;
    say(`[Workflow 2] Lock created for '${owner}' (fence ${second.fence}) ${handoffMs.toFixed(1)} ms after the unlock`);
    await second.release();
    say('[Workflow 2] Done, lock released');

    // 3. Workflow 3 (node A) takes the lock and dies: it never renews and never releases.
    const deadTtlMs = 1000;
    const dead = await nodeA.acquire(key, { owner, ttlMs: deadTtlMs, autoRenew: false, metadata: { message: 'Workflow 3 (will crash)' } });
    let deadSelfFencedAt = Infinity;
    dead.signal.addEventListener('abort', () => {
      deadSelfFencedAt = performance.now();
    });
    say(`[Workflow 3] Lock created (fence ${dead.fence}, TTL ${deadTtlMs} ms), then the workflow crashes`);

    // Workflow 4 (node B) queues behind the dead holder. It does not decide the lock is stale:
    // the store expires the lease when its TTL runs out and grants the waiter at that moment.
    say('[Workflow 4] Waiting for the lock (up to 30 minutes)');
    const waitStarted = performance.now();
    const takeover = await nodeB.acquire(key, { owner, waitMs: '30m' });
    const takeoverWaitedMs = performance.now() - waitStarted;
    const deadSelfFenced = deadSelfFencedAt <= performance.now();
    say(
      `[Workflow 4] Lock created (fence ${takeover.fence}) after ${takeoverWaitedMs.toFixed(0)} ms, ` +
        `${takeover.acquiredAt.getTime() - dead.expiresAt.getTime()} ms after the dead lease expired (store clock)`,
    );

    const history = await nodeB.history({ key, limit: 50 });
    const deadEnd = history.find((e) => e.fence === dead.fence && e.type !== 'acquired');
    const forced = history.filter((e) => e.type === 'forced').length;
    say(`[History] fence ${dead.fence}: ${deadEnd?.type ?? '?'} by ${deadEnd?.reason ?? '?'}; force-releases: ${forced}`);
    await removeLock(nodeB, key, owner);

    return {
      key,
      firstLocked,
      secondLocked,
      busyHolderOwner,
      unlocked,
      handoffMs,
      firstFence,
      secondFence: second.fence,
      deadFence: dead.fence,
      deadTtlMs,
      deadExpiresAt: dead.expiresAt.getTime(),
      deadSelfFenced,
      takeoverFence: takeover.fence,
      takeoverAcquiredAt: takeover.acquiredAt.getTime(),
      takeoverWaitedMs,
      deadEndedBy: deadEnd ? `${deadEnd.type}:${deadEnd.reason}` : null,
      forced,
    };
  } finally {
    await nodeB.close();
    await nodeA.close();
  }
}

runAsScript(import.meta.url, main);
