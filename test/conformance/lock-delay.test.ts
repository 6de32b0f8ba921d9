/**
 * SPEC 1 `lockDelayMs` (Chubby's lock-delay): after a lease ends *other than by a normal release*
 * (expiry, forced release, owner cleanup) its keys stay unavailable for that long. A normal
 * release frees them at once.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LockBusyError } from '../../src/index.js';
import { rejectsWith, sleep } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('Lock-delay', (ctx) => {
  it('after expiry the key stays unavailable for lockDelayMs, then is granted', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const lease = await a.acquire('delay/exp', { ttlMs: 150, autoRenew: false, lockDelayMs: 1500 });
    await sleep(300);
    const busy = await rejectsWith<LockBusyError>(b.acquire('delay/exp'), 'LOCK_BUSY');
    assert.deepEqual(busy.holders.map((h) => `${h.key}:${h.owner}:${h.state}`), ['delay/exp:a:delayed']);
    assert.equal(Date.parse(busy.holders[0]!.expiresAt!), lease.expiresAt.getTime() + 1500);
    const next = await b.acquire('delay/exp', { waitMs: 5000 });
    assert.ok(next.acquiredAt.getTime() >= lease.expiresAt.getTime() + 1500, 'granted inside the lock-delay');
    assert.ok(next.acquiredAt.getTime() < lease.expiresAt.getTime() + 1500 + 1000, 'the lock-delay held too long');
  });

  it('after forceRelease and after releaseOwner the key stays unavailable for lockDelayMs', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const admin = await ctx.open({ actor: 'admin' });
    for (const end of ['force', 'owner'] as const) {
      const key = `delay/${end}`;
      await a.acquire(key, { ttlMs: 30_000, lockDelayMs: 500 });
      const endedAt = Date.now();
      assert.equal(end === 'force' ? await admin.forceRelease(key) : await admin.releaseOwner('a'), 1);
      assert.equal(await b.tryAcquire(key), null, `${key}: available right after the ${end} release`);
      const next = await b.acquire(key, { waitMs: 5000 });
      const waited = Date.now() - endedAt;
      assert.ok(waited >= 450, `${key}: granted ${waited} ms after the ${end} release, inside the lock-delay`);
      await next.release();
    }
  });

  it('after a normal release there is no lock-delay', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const lease = await a.acquire('delay/normal', { lockDelayMs: 5000 });
    await lease.release();
    assert.ok(await b.tryAcquire('delay/normal'), 'a normal release left a lock-delay');
  });

  it('a lock-delay also keeps conflicting ancestor and descendant keys unavailable', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const admin = await ctx.open({ actor: 'admin' });
    await a.acquire('delay/tree/x', { lockDelayMs: 2000 });
    await admin.forceRelease('delay/tree/x');
    assert.equal(await b.tryAcquire('delay/tree'), null);
    assert.equal(await b.tryAcquire('delay/tree/x/y'), null);
    assert.ok(await b.tryAcquire('delay/tree/z'), 'a sibling is not delayed');
  });
});
