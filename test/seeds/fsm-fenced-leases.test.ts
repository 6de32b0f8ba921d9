/**
 * Seed 004 (aws-lambda-fsm leases), SPEC section 7.5: the seed's smoke test step by step, and the
 * GC-pause story with a fenced write to Postgres.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../examples/fsm-fenced-leases.js';
import { seedStores } from './stores.js';

describe('seed 004: fsm leases with fences', () => {
  for (const store of seedStores('fsm')) {
    test(`on ${store.name}`, async () => {
      const r = await main({ store: store.url });

      // smoke: acquire on a fresh store -> 1
      assert.equal(r.fence1, 1);
      // not re-entrant; not someone else's
      assert.equal(r.reentry, 'LOCK_BUSY');
      assert.equal(r.otherAcquire, 'LOCK_BUSY');
      // no foreign release, no release with the wrong token (lease id)
      assert.equal(r.foreignReleaseById, false);
      assert.equal(r.foreignReleaseByOwner, 0);
      assert.equal(r.wrongIdRelease, false);
      assert.equal(r.heldAfterRefusals, true);
      // release with the right one
      assert.equal(r.rightRelease, true);
      // short lease, then takeover after the timeout with a higher fence: 2, then 3
      assert.equal(r.fence2, 2);
      assert.equal(r.fence3, 3);
      // the timed-out lease: self-fenced, cannot renew, cannot release the new lease
      assert.equal(r.staleSignalAborted, true);
      assert.equal(r.staleRenew, 'LEASE_LOST');
      assert.equal(r.staleRelease, false);
      assert.equal(r.newHeldAfterStaleRelease, true);

      // GC pause: holder 2 writes, holder 1's late write is rejected.
      assert.ok(r.holder2Fence > r.holder1Fence);
      assert.deepEqual(r.holder2Write, { accepted: true, value: 'step-2-done', fence: r.holder2Fence });
      assert.deepEqual(r.holder1Write, { accepted: false, highestFence: r.holder2Fence });
      assert.deepEqual(r.finalRow, { state: 'step-2-done', writer: 'lambda-2', fence: r.holder2Fence });
      // Holder 1's lease fenced itself before the store let holder 2 in.
      assert.equal(r.holder1SelfFencedFirst, true);
      assert.equal(r.holder1SignalAbortedOnWake, true);
    });
  }
});
