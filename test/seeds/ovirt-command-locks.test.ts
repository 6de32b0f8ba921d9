/**
 * Seed 001 (oVirt command locks), SPEC section 7.2: shared pool + exclusive domain in one request,
 * two domains of a pool together, a reconstruct that waits for both, the holder's message read by
 * a blocked caller, a lease kept past the command renewed and released by id from another Locks
 * object, and (durable stores) still there after a crash and restart.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../examples/ovirt-command-locks.js';
import { seedStores } from './stores.js';

describe('seed 001: oVirt command locks', () => {
  for (const store of seedStores('ovirt')) {
    test(`on ${store.name}`, async () => {
      const r = await main({ store: store.url });
      const pool = `${r.root}/pools/P`;

      // One lease holds both locks.
      assert.deepEqual(r.activateD1Resources, [
        { key: pool, mode: 'shared' },
        { key: `${r.root}/domains/D1`, mode: 'exclusive' },
      ]);
      assert.equal(r.poolHoldersTogether, 2);

      // The blocked caller reads the holder's message, and holds nothing (all or nothing).
      assert.match(r.blockedMessage, /Storage domain D1 is being activated/);
      assert.match(r.blockedMessage, /ActivateStorageDomain-D1/);
      assert.deepEqual(r.blockedHolderMessages, ['Storage domain D1 is being activated']);
      assert.equal(r.blockedCallerHeldNothing, true);

      // Reconstruct waits for both activations and is granted when the second ends.
      assert.deepEqual(r.reconstructBlockedBy, ['ActivateStorageDomain-D1', 'ActivateStorageDomain-D2']);
      assert.equal(r.reconstructQueued, true);
      assert.equal(r.reconstructGrantedAfterFirstRelease, false);
      assert.ok(r.reconstructHandoffMs >= 0 && r.reconstructHandoffMs < 500, `reconstruct granted ${r.reconstructHandoffMs} ms after the release`);

      // The template lease outlives the command, is renewed by id from another Locks object...
      assert.match(r.removeTemplateBlockedMessage, /Template T is in use: VM vm1 is being created from it/);
      assert.ok(r.expiresAfterRenew >= r.expiresBeforeRenew + 30_000, 'the renew by id extended the lease to 60 s');

      // ...survives the restart on a durable store...
      assert.equal(r.restarted, store.name !== 'memory', 'the restart step runs on durable stores only');
      assert.deepEqual(r.leaseAfterRestart, { owner: 'AddVmFromTemplate-vm1', fence: r.templateFence });

      // ...is taken over by id and released by id.
      assert.equal(r.attachedFence, r.templateFence);
      assert.equal(r.releasedById, true);
      assert.equal(r.goneAfterRelease, true);
      // Fences keep rising (across the restart too).
      assert.ok(r.removeTemplateFence > r.templateFence);
    });
  }
});
