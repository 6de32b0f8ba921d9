/**
 * SPEC 3.11 Self-fencing: a client that cannot renew considers its lease lost *before* the store
 * does: the lease's `signal` aborts, `lost` fires on the lease and on the `Locks` object, while
 * `Date.now()` is still before `expiresAt`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { it } from 'node:test';
import { HoldfastError, StoreUnavailableError, type Lease, type LeaseLostError, type LockStore, type RenewOutcome } from '../../src/index.js';
import { ForwardingStore } from './forwarding-store.js';
import { eventually, keepAlive, sleep } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

/** A store whose renewals fail as if the database were unreachable (the first `failures` ones, or all). */
class FailingRenewStore extends ForwardingStore {
  renewCalls = 0;
  constructor(inner: LockStore, readonly failures = Infinity) {
    super(inner);
  }
  override async renew(leaseId: string, ttlMs: number, options?: Parameters<LockStore['renew']>[2]): Promise<RenewOutcome> {
    this.renewCalls++;
    if (this.renewCalls <= this.failures) throw new StoreUnavailableError('connection refused (injected by the test)');
    return super.renew(leaseId, ttlMs, options);
  }
}

interface Loss {
  at: number;
  reason: unknown;
}

/** Resolves when the lease's signal aborts, with `Date.now()` at that moment. */
function whenAborted(lease: Lease): Promise<Loss> {
  return keepAlive(new Promise((resolve) => {
    lease.signal.addEventListener('abort', () => resolve({ at: Date.now(), reason: lease.signal.reason }), { once: true });
  }));
}

function assertLeaseLost(reason: unknown): void {
  assert.ok(reason instanceof HoldfastError, `the abort reason is ${String(reason)}`);
  assert.equal(reason.code, 'LEASE_LOST');
}

describeEachStore('Self-fencing', (ctx) => {
  it('a lease that cannot renew aborts its signal and emits lost before expiresAt', TIMEOUT, async () => {
    const stores: FailingRenewStore[] = [];
    const locks = await ctx.open({ owner: 'worker' }, (store) => {
      stores.push(new FailingRenewStore(store));
      return stores[0]!;
    });
    const observer = await ctx.open({ owner: 'observer' });
    const lease = await locks.acquire('sf/key', { ttlMs: 2000 });
    const expiresAt = lease.expiresAt.getTime();
    const aborted = whenAborted(lease);
    const leaseLost = once(lease, 'lost');
    const locksLost = once(locks, 'lost');

    const { at, reason } = await aborted;
    assert.ok(at < expiresAt, `the signal aborted ${at - expiresAt} ms after expiresAt`);
    assertLeaseLost(reason);
    assert.equal(lease.state, 'lost');
    assert.ok(stores[0]!.renewCalls >= 2, `only ${stores[0]!.renewCalls} renewal attempts: it gave up at the first failure`);
    // At that moment the store still holds the lease: the client fenced itself first.
    const record = await observer.get(lease.id);
    if (Date.now() < expiresAt) assert.ok(record !== null, 'the store ended the lease before its expiry');

    const [leaseError] = (await leaseLost) as [LeaseLostError];
    assertLeaseLost(leaseError);
    const [lostLease, locksError] = (await locksLost) as [Lease, LeaseLostError];
    assert.equal(lostLease, lease);
    assertLeaseLost(locksError);
    assert.ok(!locks.held.includes(lease));
    await assert.rejects(lease.renew(), (e: unknown) => e instanceof HoldfastError && e.code === 'LEASE_LOST');
  });

  it('a lease without autoRenew fences itself before expiresAt', TIMEOUT, async () => {
    const locks = await ctx.open({ owner: 'worker' });
    const lease = await locks.acquire('sf/manual', { ttlMs: 2000, autoRenew: false });
    const expiresAt = lease.expiresAt.getTime();
    const locksLost = once(locks, 'lost');
    const { at, reason } = await whenAborted(lease);
    assert.ok(at < expiresAt, `the signal aborted ${at - expiresAt} ms after expiresAt`);
    assertLeaseLost(reason);
    const [lostLease] = (await locksLost) as [Lease];
    assert.equal(lostLease, lease);
  });

  it('renewals that fail for a while and then succeed keep the lease', TIMEOUT, async () => {
    const stores: FailingRenewStore[] = [];
    const locks = await ctx.open({ owner: 'worker' }, (store) => {
      stores.push(new FailingRenewStore(store, 2));
      return stores[0]!;
    });
    const other = await ctx.open({ owner: 'other' });
    // A TTL long enough that two failed renewals (at 2 s, retried every 600 ms) leave two seconds
    // before the local deadline: on a loaded CI machine a slow acquire, a late timer or a slow
    // renewal round trip must not use up the lease before the third call has succeeded.
    const lease = await locks.acquire('sf/flaky', { ttlMs: 6000 });
    let lost: unknown = null;
    lease.on('lost', (error) => (lost = error));
    // Two failed renewals, then renewals that work: wait for the third call, up to 10 s.
    const until = performance.now() + 10_000;
    while (stores[0]!.renewCalls <= 2 && performance.now() < until) await sleep(50);
    await sleep(300);
    assert.ok(stores[0]!.renewCalls > 2, `the lease stopped renewing after failures (${stores[0]!.renewCalls} calls, lost: ${String(lost)})`);
    assert.equal(lost, null, `the lease was lost: ${String(lost)}`);
    assert.equal(lease.state, 'held');
    assert.ok(lease.expiresAt.getTime() > Date.now());
    assert.equal(await other.tryAcquire('sf/flaky'), null);
  });

  it('a lease the store ended (forced) is lost at its next renewal, before expiresAt', TIMEOUT, async () => {
    const locks = await ctx.open({ owner: 'worker' });
    const admin = await ctx.open({ actor: 'admin' });
    const lease = await locks.acquire('sf/forced', { ttlMs: 2000 });
    const expiresAt = lease.expiresAt.getTime();
    const aborted = whenAborted(lease);
    const locksLost = once(locks, 'lost');
    assert.equal(await admin.forceRelease('sf/forced'), 1);
    const { at, reason } = await aborted;
    assert.ok(at < expiresAt, `noticed ${at - expiresAt} ms after expiresAt`);
    assertLeaseLost(reason);
    await locksLost;
  });

  it('withLock hands the lease signal to the work, which can stop when the lease is lost', TIMEOUT, async () => {
    const locks = await ctx.open({ owner: 'worker' }, (store) => new FailingRenewStore(store));
    const observer = await ctx.open({ owner: 'observer' });
    const result = await locks.withLock('sf/work', { ttlMs: 2000 }, async (lease) => {
      assert.equal(lease.signal.aborted, false);
      const expiresAt = lease.expiresAt.getTime();
      const { at } = await whenAborted(lease);
      assert.ok(at < expiresAt, `the signal aborted ${at - expiresAt} ms after expiresAt`);
      return 'stopped';
    });
    assert.equal(result, 'stopped');
    await eventually(async () => assert.deepEqual((await observer.list()).locks, []));
  });
});

/** A store whose first `release` fails as if the database were unreachable. */
class FailingReleaseStore extends ForwardingStore {
  releaseCalls = 0;
  override async release(leaseId: string, options?: Parameters<LockStore['release']>[1]): Promise<boolean> {
    if (++this.releaseCalls === 1) throw new StoreUnavailableError('connection refused (injected by the test)');
    return super.release(leaseId, options);
  }
}

describeEachStore('Release that fails', (ctx) => {
  it('a release the store did not take throws, and a second release() tries again', TIMEOUT, async () => {
    const locks = await ctx.open({ owner: 'worker' }, (store) => new FailingReleaseStore(store));
    const other = await ctx.open({ owner: 'other' });
    const lease = await locks.acquire('rf/key', { ttlMs: 60_000 });
    await assert.rejects(lease.release(), (e: unknown) => e instanceof HoldfastError && e.code === 'STORE_UNAVAILABLE');
    assert.equal(lease.signal.aborted, true, 'the holder stops using the lease at once');
    assert.equal(await other.tryAcquire('rf/key'), null, 'the store still holds it');
    assert.equal(await lease.release(), true, 'the second release reaches the store');
    assert.ok(await other.tryAcquire('rf/key'), 'the key is free');
    assert.equal(await lease.release(), false);
  });
});
