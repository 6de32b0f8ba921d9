/**
 * SPEC 3.4 Store time: expiry is judged by the store's clock; an expired lease confers nothing:
 * renewing it fails with LEASE_LOST (410), releasing it returns false. Unknown ids are NOT_FOUND.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { newLeaseId } from '../../src/index.js';
import { background, eventually, rejectsWith, sleep, waitForWaiters } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('Store time and expiry', (ctx) => {
  it('a granted lease runs ttlMs from its grant, on the store clock', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const before = Date.now();
    const lease = await a.acquire('st/key', { ttlMs: 4321 });
    assert.equal(lease.expiresAt.getTime() - lease.acquiredAt.getTime(), 4321);
    assert.equal(lease.ttlMs, 4321);
    // The store runs on this host: its clock is close to ours.
    assert.ok(Math.abs(lease.acquiredAt.getTime() - before) < 2000, `acquiredAt ${lease.acquiredAt.toISOString()} is far from now`);
    const record = await a.get(lease.id);
    assert.equal(record!.expiresAt, lease.expiresAt.getTime());
  });

  it('a 1 s lease without autoRenew expires; another owner then gets it with a higher fence', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    // Long enough that a loaded machine still asks while it is held.
    const lease = await a.acquire('st/exp', { ttlMs: 1000, autoRenew: false });
    assert.equal(await b.tryAcquire('st/exp'), null);
    const taken = await b.acquire('st/exp', { waitMs: 5000 });
    assert.ok(taken.fence > lease.fence);
    assert.ok(taken.acquiredAt.getTime() >= lease.expiresAt.getTime(), 'granted before the first lease expired');
    assert.deepEqual((await b.list()).locks.map((l) => l.owner), ['b']);
  });

  it('after expiry: renew is LEASE_LOST (410), release returns false, get returns null', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const lease = await a.acquire('st/lost', { ttlMs: 150, autoRenew: false });
    await sleep(400);
    const error = await rejectsWith(a.renew(lease.id), 'LEASE_LOST', 410);
    assert.equal(error.status, 410);
    await rejectsWith(a.renew(lease.id, { ttlMs: 10_000 }), 'LEASE_LOST', 410);
    await rejectsWith(lease.renew(), 'LEASE_LOST', 410);
    assert.equal(await a.release(lease.id), false);
    assert.equal(await lease.release(), false);
    assert.equal(await a.get(lease.id), null);
    assert.deepEqual((await a.list()).locks, []);
    // Another object, which never saw the lease, gets the same answers from the store.
    const b = await ctx.open({ owner: 'b' });
    await rejectsWith(b.renew(lease.id), 'LEASE_LOST', 410);
    assert.equal(await b.release(lease.id), false);
  });

  it('attach() of an expired or released lease is LEASE_LOST, like renew', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const expired = await a.acquire('st/attach-exp', { ttlMs: 150, autoRenew: false });
    const released = await a.acquire('st/attach-rel');
    await released.release();
    await sleep(300);
    await rejectsWith(b.renew(expired.id), 'LEASE_LOST', 410);
    await rejectsWith(b.attach(expired.id), 'LEASE_LOST', 410);
    await rejectsWith(b.attach(released.id), 'LEASE_LOST', 410);
  });

  it('an expired lease is not renewed even when nobody touched the store since it expired', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const lease = await a.acquire('st/quiet', { ttlMs: 200, autoRenew: false });
    await sleep(350);
    await rejectsWith(b.renew(lease.id, { ttlMs: 60_000 }), 'LEASE_LOST', 410);
    assert.ok(await b.tryAcquire('st/quiet'));
  });

  it("a client clock an hour off changes nothing: expiry follows the store's clock", TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const realNow = Date.now;
    try {
      for (const skew of [3_600_000, -3_600_000]) {
        Date.now = () => realNow.call(Date) + skew;
        const lease = await a.acquire('st/skew', { ttlMs: 1000 });
        const short = await a.acquire('st/skew-short', { ttlMs: 200, autoRenew: false });
        assert.equal(await b.tryAcquire('st/skew'), null, `skew ${skew}: a fresh lease looks expired`);
        await sleep(400);
        assert.equal(lease.state, 'held', `skew ${skew}: the lease was lost`);
        assert.ok(await a.get(lease.id), `skew ${skew}: the store dropped a renewed lease`);
        assert.equal(await a.get(short.id), null, `skew ${skew}: a 200 ms lease outlived its TTL`);
        const next = await b.tryAcquire('st/skew-short');
        assert.ok(next, `skew ${skew}: the expired lease still blocks`);
        await Promise.all([lease.release(), next.release()]);
      }
    } finally {
      Date.now = realNow;
    }
  });

  it('renewing an unknown id is NOT_FOUND (404); releasing it returns false', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    await rejectsWith(a.renew(newLeaseId()), 'NOT_FOUND', 404);
    await rejectsWith(a.renew('not a lease id'), 'NOT_FOUND', 404);
    await rejectsWith(a.attach(newLeaseId()), 'NOT_FOUND', 404);
    assert.equal(await a.release(newLeaseId()), false);
    assert.equal(await a.get(newLeaseId()), null);
  });

  it('renewing a released or force-released lease is LEASE_LOST', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const released = await a.acquire('st/rel');
    await released.release();
    await rejectsWith(a.renew(released.id), 'LEASE_LOST', 410);
    const forced = await a.acquire('st/forced');
    assert.equal(await a.forceRelease('st/forced'), 1);
    await rejectsWith(a.renew(forced.id), 'LEASE_LOST', 410);
    assert.equal(await a.release(forced.id), false);
  });

  it('renew extends the lease from now; the lease outlives its first expiry', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const lease = await a.acquire('st/renew', { ttlMs: 800, autoRenew: false });
    await sleep(150);
    const renewed = await a.renew(lease.id, { ttlMs: 4000 });
    assert.equal(renewed.ttlMs, 4000);
    assert.ok(renewed.expiresAt > lease.expiresAt.getTime() + 2000);
    await sleep(900);
    assert.ok(await a.get(lease.id), 'the renewed lease expired at its first expiry');
    assert.equal(await b.tryAcquire('st/renew'), null);
  });

  it('an auto-renewed short lease stays held across several TTLs', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    // 1.5 s: renewed every 500 ms, with 850 ms of slack after each renewal (a 600 ms lease left
    // 340 ms, which a slow renewal on a loaded CI machine's MariaDB used up).
    const lease = await a.acquire('st/auto', { ttlMs: 1500 });
    let lost: unknown = null;
    lease.on('lost', (error) => (lost = error));
    const firstExpiry = lease.expiresAt.getTime();
    await sleep(4000);
    assert.equal(lost, null, `the lease was lost: ${String(lost)}`);
    assert.equal(lease.state, 'held');
    assert.equal(lease.signal.aborted, false);
    assert.ok(lease.expiresAt.getTime() > firstExpiry);
    assert.equal(await b.tryAcquire('st/auto'), null);
    assert.equal(await lease.release(), true);
  });

  it('expiry is recorded in history as expired, at the expiry time', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    // Long enough that b queues before it expires, also on a loaded machine.
    const lease = await a.acquire('st/hist', { ttlMs: 1000, autoRenew: false });
    const waiting = background(b.acquire('st/hist', { waitMs: 5000 }));
    await waitForWaiters(a, 1);
    await waiting;
    const events = await eventually(async () => {
      const found = (await a.history({ key: 'st/hist' })).filter((e) => e.fence === lease.fence);
      assert.deepEqual(found.map((e) => e.type).sort(), ['acquired', 'expired']);
      return found;
    });
    const expired = events.find((e) => e.type === 'expired')!;
    assert.equal(expired.owner, 'a');
    assert.ok(Date.parse(expired.at) >= lease.expiresAt.getTime() - 1);
  });
});
