/**
 * SPEC 3.10 Durability: on durable stores leases, queue order and the fence counter survive a
 * restart (`ctx.reopen()`: every connection dropped without releasing anything, then a new
 * `Locks` object on the same file or schema). A lease is taken over after the restart by its id.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { holdingOwners, storeRequest, waitingOwners } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('Durability', (ctx) => {
  // Restart tests exist only for durable stores: a memory store has nothing to survive with.
  const durableIt = (name: string, fn: () => Promise<void>): void => {
    if (ctx.durable) it(name, TIMEOUT, fn);
  };

  it('the store reports its kind and whether it is durable', TIMEOUT, async () => {
    const a = await ctx.open();
    assert.equal(a.store.info.kind, ctx.kind);
    assert.equal(a.store.info.durable, ctx.durable);
  });

  durableIt('a lease survives a restart; attach() in the new process renews and releases it', async () => {
    const a = await ctx.open({ owner: 'engine' });
    const lease = await a.acquire(
      [{ key: 'pools/P', mode: 'shared' }, { key: 'domains/D', mode: 'exclusive' }],
      { ttlMs: 60_000, metadata: { message: 'async task 12' } },
    );
    const b = await ctx.reopen({ owner: 'other' });
    const record = await b.get(lease.id);
    assert.ok(record, 'the lease is gone after the restart');
    assert.equal(record.fence, lease.fence);
    assert.equal(record.owner, 'engine');
    assert.deepEqual(record.resources, [{ key: 'pools/P', mode: 'shared', limit: null }, { key: 'domains/D', mode: 'exclusive', limit: null }]);
    assert.deepEqual(record.metadata, { message: 'async task 12' });
    assert.equal(record.expiresAt, lease.expiresAt.getTime());
    assert.deepEqual((await b.list()).locks.map((l) => `${l.key}:${l.owner}:${l.fence}`).sort(), [`domains/D:engine:${lease.fence}`, `pools/P:engine:${lease.fence}`]);
    assert.equal(await b.tryAcquire('domains/D'), null, 'the lease no longer excludes others after the restart');

    const attached = await b.attach(lease.id, { ttlMs: 30_000 });
    assert.equal(attached.id, lease.id);
    assert.equal(attached.fence, lease.fence);
    assert.equal(attached.owner, 'engine');
    assert.equal(attached.ttlMs, 30_000);
    await attached.renew();
    assert.equal(attached.state, 'held');
    assert.equal(await attached.release(), true);
    assert.deepEqual((await b.list()).locks, []);
    const next = await b.acquire('domains/D');
    assert.ok(next.fence > lease.fence);
  });

  durableIt('queued waiters keep their places and order across a restart', async () => {
    const h = await ctx.open({ owner: 'holder' });
    const held = await h.acquire('dq/key', { ttlMs: 60_000 });
    const options = { waitMs: 60_000, waiterTtlMs: 60_000 };
    const first = await h.store.acquire(storeRequest({ owner: 'first', resources: ['dq/key'] }), options);
    const second = await h.store.acquire(storeRequest({ owner: 'second', resources: ['dq/key'] }), options);
    assert.ok(first.status === 'queued' && second.status === 'queued');

    const b = await ctx.reopen({ owner: 'admin' });
    const table = await b.list();
    assert.deepEqual(waitingOwners(table, 'dq/key'), ['first', 'second']);
    assert.deepEqual(table.waiters.map((w) => w.position), [1, 2]);
    assert.deepEqual(holdingOwners(table, 'dq/key'), ['holder']);

    assert.equal(await b.release(held.id), true);
    const p1 = await b.store.poll(first.ticket);
    assert.ok(p1.status === 'granted', `the first waiter is ${p1.status} after the holder released`);
    assert.equal(p1.lease.id, first.ticket);
    assert.ok(p1.lease.fence > held.fence);
    assert.equal((await b.store.poll(second.ticket)).status, 'queued');
    assert.equal(await b.release(first.ticket), true);
    const p2 = await b.store.poll(second.ticket);
    assert.ok(p2.status === 'granted');
    assert.ok(p2.lease.fence > p1.lease.fence);
  });

  durableIt('a lease left by a crashed process still expires on time after the restart', async () => {
    const a = await ctx.open({ owner: 'crashed' });
    // Long enough that the reopen and the try below come before the expiry on a loaded machine.
    const lease = await a.acquire('dx/key', { ttlMs: 2000, autoRenew: false });
    const b = await ctx.reopen({ owner: 'successor' });
    assert.equal(await b.tryAcquire('dx/key'), null);
    const next = await b.acquire('dx/key', { waitMs: 10_000 });
    assert.ok(next.acquiredAt.getTime() >= lease.expiresAt.getTime());
    assert.ok(next.fence > lease.fence);
    assert.deepEqual((await b.history({ key: 'dx/key' })).map((e) => e.type), ['acquired', 'expired', 'acquired']);
  });
});
