/**
 * Seed 000 (vRO LockingSystem), SPEC section 7.1: try-lock true/false, a waiter granted the moment
 * the holder unlocks (not on a 10 s poll), a dead holder taken over at its TTL by the store's
 * expiry with a higher fence (never force-released as "stale"), unlock(id, owner).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../examples/vro-workflow-lock.js';
import { openLocks } from '../../src/index.js';
import { seedStores } from './stores.js';

describe('seed 000: vRO workflow lock', () => {
  for (const store of seedStores('vro')) {
    test(`on ${store.name}`, async () => {
      const lines: string[] = [];
      const r = await main({ store: store.url, log: (line) => lines.push(line) });
      assert.match(r.key, /^vro-[0-9a-f]{6}\/lb\/SITEB-CLS-CLOUD-01$/);

      // LockingSystem.lock(id, owner): true, then false while held (same owner: not re-entrant).
      assert.equal(r.firstLocked, true);
      assert.equal(r.secondLocked, false);
      assert.equal(r.busyHolderOwner, 'inventory');

      // unlock(id, owner) ended the lease and the queued workflow got it at once, not on a 10 s poll.
      assert.equal(r.unlocked, 1);
      assert.ok(r.handoffMs >= 0 && r.handoffMs < 500, `hand-off took ${r.handoffMs} ms`);
      assert.ok(r.secondFence > r.firstFence);

      // The dead holder: taken over only once its TTL ran out, by expiry, promptly, with a higher fence.
      assert.ok(r.deadFence > r.secondFence);
      assert.ok(r.takeoverFence > r.deadFence);
      assert.ok(r.takeoverAcquiredAt >= r.deadExpiresAt, `granted at ${r.takeoverAcquiredAt}, before the dead lease expired at ${r.deadExpiresAt}`);
      assert.ok(r.takeoverAcquiredAt - r.deadExpiresAt < 500, `granted ${r.takeoverAcquiredAt - r.deadExpiresAt} ms after expiry`);
      assert.ok(r.takeoverWaitedMs >= r.deadTtlMs - 100, `waited only ${r.takeoverWaitedMs} ms of a ${r.deadTtlMs} ms TTL`);
      assert.ok(r.takeoverWaitedMs < r.deadTtlMs + 1000, `waited ${r.takeoverWaitedMs} ms`);
      assert.equal(r.deadEndedBy, 'expired:expiry');
      assert.equal(r.forced, 0);
      // The dead holder's own lease object had fenced itself before the takeover.
      assert.equal(r.deadSelfFenced, true);

      assert.ok(lines.some((l) => l.includes("Existing lock found for 'inventory'")));
      assert.ok(lines.some((l) => l.includes('LOCK_BUSY') && l.includes('Data collection in progress')));
    });
  }
});

// When unlock(id, owner), that is `releaseOwner`, or an admin's `forceRelease` ends a lease, its
// holder learns it from the store's push at once, not at its next renewal (a third of the TTL).
test('a lease ended by releaseOwner aborts its holder\'s signal at once (memory store pushes the change)', async () => {
  const locks = await openLocks('memory:');
  try {
    const lease = await locks.acquire('lb/SITEB-CLS-CLOUD-01', { owner: 'inventory', ttlMs: '30s' });
    assert.equal(await locks.releaseOwner('inventory', { key: 'lb/SITEB-CLS-CLOUD-01' }), 1);
    const next = await locks.tryAcquire('lb/SITEB-CLS-CLOUD-01', { owner: 'inventory' });
    assert.ok(next, 'someone else holds the lock now');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(lease.signal.aborted, true, 'the old holder still believes it holds the lock');
    assert.equal(lease.state, 'lost');
  } finally {
    await locks.close();
  }
});
