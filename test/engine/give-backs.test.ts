/**
 * Give-backs at close (src/engine/give-backs.ts): a wait aborted while the store refuses the
 * cancel leaves its ticket queued; when the holder releases, the store grants that ticket to
 * nobody. `Locks.close()` tries the cancel again before it closes the store, so that lease is
 * released at once rather than left to its TTL (the fault harness saw this: a worker stopped
 * right after its connections were killed). `giveBackMs` bounds how long it tries.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryStore, HoldfastError, openLocks, type EndOptions, type LockStore } from '../../src/index.js';
import { ForwardingStore } from '../conformance/forwarding-store.js';

/** Cancels fail while `down`; closing leaves the inner store open, for the test to look at. */
class FlakyCancels extends ForwardingStore {
  down = false;
  cancels = 0;
  override cancel(ticket: string, options?: EndOptions): Promise<boolean> {
    this.cancels++;
    if (this.down) return Promise.reject(new HoldfastError('STORE_UNAVAILABLE', 503, 'the store is unavailable (test)'));
    return super.cancel(ticket, options);
  }
  override close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A holder, and a waiter behind it aborted while cancels fail: its ticket stays queued. */
async function abandonedTicket(store: FlakyCancels): Promise<{ close: (giveBackMs?: number) => Promise<void>; releaseHolder: () => Promise<void> }> {
  // The holder on a store object of its own (closing a Locks object gives back its store's pending cancels).
  const holder = await openLocks(new FlakyCancels(store.inner) as LockStore, { owner: 'holder' });
  const waiting = await openLocks(store as LockStore, { owner: 'waiter' });
  const lease = await holder.acquire('k', { ttlMs: 60_000 });
  const abort = new AbortController();
  const wait = waiting.acquire('k', { waitMs: 30_000, ttlMs: 60_000, signal: abort.signal });
  while ((await store.inner.list()).waiters.length === 0) await new Promise((r) => setTimeout(r, 5));
  store.down = true;
  abort.abort(new Error('given up'));
  await assert.rejects(wait, /given up/);
  assert.equal((await store.inner.list()).waiters.length, 1, 'the cancel failed: the ticket is still queued');
  return {
    releaseHolder: async () => {
      await lease.release();
      await holder.close();
    },
    close: (giveBackMs) => waiting.close(giveBackMs === undefined ? {} : { giveBackMs }),
  };
}

describe('Locks.close gives back what an outage kept', () => {
  it('cancels the abandoned ticket at close, releasing the lease the store granted it', async () => {
    const store = new FlakyCancels(createMemoryStore());
    try {
      const { close, releaseHolder } = await abandonedTicket(store);
      await releaseHolder();
      const granted = (await store.inner.list()).locks;
      assert.equal(granted.length, 1);
      assert.equal(granted[0]?.owner, 'waiter', 'the store granted the abandoned ticket');
      store.down = false;
      await close();
      assert.deepEqual((await store.inner.list()).locks, [], 'closing released it at once');
      const [ended] = await store.inner.history({ limit: 1 });
      assert.equal(ended?.type, 'released');
      assert.equal(ended?.owner, 'waiter');
    } finally {
      await store.inner.close();
    }
  });

  it('gives up after giveBackMs while the store still refuses', async () => {
    const store = new FlakyCancels(createMemoryStore());
    try {
      const { close, releaseHolder } = await abandonedTicket(store);
      await releaseHolder();
      const before = store.cancels;
      const started = performance.now();
      await close(200);
      const took = performance.now() - started;
      assert.ok(took >= 150 && took < 2000, `closing tried for about 200 ms (${Math.round(took)} ms)`);
      assert.ok(store.cancels - before >= 2, 'and tried more than once');
      assert.equal((await store.inner.list()).locks[0]?.owner, 'waiter', 'the lease is left to its TTL');
      store.down = false;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await store.inner.list()).locks.length, 1, 'and no background retry outlives the close');
    } finally {
      await store.inner.close();
    }
  });

  it('names a bad giveBackMs and stays open', async () => {
    const locks = await openLocks('memory:', { owner: 'o' });
    await assert.rejects(locks.close({ giveBackMs: -1 }), /Invalid `giveBackMs`: expected an integer 0..600000, got -1/);
    const lease = await locks.acquire('still-open');
    await lease.release();
    await locks.close();
  });
});
