/**
 * SPEC 3.9 Waiters that die leave: a waiter that stops polling loses its queue place within about
 * a second (its `waiterTtlMs`), so it never blocks others. Waiters that time out or are aborted
 * leave no queue entry and no stranded lease behind.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { StoreUnavailableError, WaitTimeoutError, type AcquireOutcome, type LockRequest } from '../../src/index.js';
import { background, eventually, holdingOwners, isPending, rejectsWith, sleep, storeRequest, waitForWaiters, waitingOwners } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';
import { ForwardingStore } from './forwarding-store.js';

/** A store whose change notices never reach this `Locks` object. */
class DeafStore extends ForwardingStore {
  override watch(): () => void {
    return () => {};
  }
}

/**
 * A store call that answers only after the caller aborted (a slow store), and a first release
 * that can't reach the store: what a partition does to a grant in flight.
 */
class LateGrantStore extends ForwardingStore {
  constructor(inner: ConstructorParameters<typeof ForwardingStore>[0], readonly abort: () => void) {
    super(inner);
  }
  releases = 0;
  override async acquire(request: LockRequest, options: Parameters<ForwardingStore['acquire']>[1]): Promise<AcquireOutcome> {
    const outcome = await super.acquire(request, { ...options, signal: undefined });
    this.abort();
    return outcome;
  }
  override release(leaseId: string): Promise<boolean> {
    if (this.releases++ === 0) return Promise.reject(new StoreUnavailableError('the store is unreachable (planted)'));
    return super.release(leaseId);
  }
}

describeEachStore('Dead waiters leave', (ctx) => {
  it('a grant that comes back after the caller aborted is given back, also when the first release fails', TIMEOUT, async () => {
    const controller = new AbortController();
    const observer = await ctx.open({ owner: 'observer' });
    const late = await ctx.open({ owner: 'late', waiterTtlMs: 1000 }, (store) => new LateGrantStore(store, () => controller.abort(new Error('stopping'))));
    await assert.rejects(late.acquire('dw/late', { ttlMs: 60_000, waitMs: 5000, signal: controller.signal }), /stopping/);
    // Granted with a 60 s TTL; nobody will use it, so it must not sit there until then.
    await eventually(async () => assert.deepEqual(holdingOwners(await observer.list(), 'dw/late'), []), 5000, 50);
    const lease = await observer.acquire('dw/late', { waitMs: 0 });
    await lease.release();
  });


  it('a waiter that stops polling loses its place; the next waiter moves up and gets the lock', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const live = await ctx.open({ owner: 'live', waiterTtlMs: 3000 });
    const held = await holder.acquire('dw/key', { ttlMs: 30_000 });
    // A waiter that queues and then dies: it never polls its ticket.
    const dead = await holder.store.acquire(storeRequest({ owner: 'dead', resources: ['dw/key'] }), { waitMs: 60_000, waiterTtlMs: 500 });
    assert.ok(dead.status === 'queued');
    const queuedAt = performance.now();
    const waiting = background(live.acquire('dw/key', { waitMs: 20_000 }));
    const table = await waitForWaiters(holder, 2);
    assert.deepEqual(waitingOwners(table, 'dw/key'), ['dead', 'live']);

    const after = await eventually(async () => {
      const now = await holder.list();
      assert.deepEqual(waitingOwners(now, 'dw/key'), ['live']);
      return now;
    }, 3000);
    const gone = performance.now() - queuedAt;
    assert.ok(gone < 2000, `the dead waiter kept its place for ${Math.round(gone)} ms with waiterTtlMs 500`);
    assert.equal(after.waiters[0]!.position, 1);

    await held.release();
    const lease = await waiting;
    assert.equal(lease.owner, 'live');
    assert.equal((await holder.store.poll(dead.ticket)).status, 'gone');
  });

  it('a dead waiter that was the only obstacle stops blocking without anyone releasing anything', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const live = await ctx.open({ owner: 'live', waiterTtlMs: 3000 });
    await holder.acquire('dw/other', { ttlMs: 30_000 });
    // The dead waiter wants dw/free and dw/other; dw/other is held, so it queues on both.
    const dead = await holder.store.acquire(storeRequest({ owner: 'dead', resources: ['dw/free', 'dw/other'] }), { waitMs: 60_000, waiterTtlMs: 500 });
    assert.equal(dead.status, 'queued');
    // dw/free has no holder, but the dead waiter queued for it first.
    const lease = await live.acquire('dw/free', { waitMs: 10_000 });
    const late = lease.acquiredAt.getTime() - dead.now;
    assert.ok(late >= 500, `granted ${late} ms after the earlier waiter queued, before it could be dropped`);
    assert.ok(late < 2000, `granted only ${late} ms after the dead waiter queued (waiterTtlMs 500)`);
    assert.deepEqual(waitingOwners(await holder.list(), 'dw/other'), []);
  });

  it('a waiter that misses its grant notice until the granted lease expired waits on and gets the lock', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    // Its store pushes nothing (a lost notice, a dropped LISTEN connection): it learns by polling.
    const deaf = await ctx.open({ owner: 'w', waiterTtlMs: 3000 }, (store) => new DeafStore(store));
    const held = await holder.acquire('dw/missed');
    const waiting = background(deaf.acquire('dw/missed', { waitMs: 10_000, ttlMs: 100 }));
    await waitForWaiters(holder, 1);
    await held.release();
    // The store granted the waiter a 100 ms lease; it expires before the waiter's next poll.
    const lease = await waiting;
    assert.equal(lease.owner, 'w');
    assert.deepEqual(lease.keys, ['dw/missed']);
    await lease.release();
  });

  it('a wait that times out throws WAIT_TIMEOUT with the holders and leaves no queue entry or lease', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'backup-7' });
    const waiter = await ctx.open({ owner: 'waiter' });
    const held = await holder.acquire('dw/timeout', { metadata: { message: 'Backup in progress' } });
    const startedAt = performance.now();
    const error = await rejectsWith<WaitTimeoutError>(waiter.acquire('dw/timeout', { waitMs: 300 }), 'WAIT_TIMEOUT', 409);
    const waited = performance.now() - startedAt;
    assert.ok(waited >= 280, `gave up after ${Math.round(waited)} ms of a 300 ms wait`);
    assert.ok(waited < 2000, `gave up only after ${Math.round(waited)} ms`);
    assert.ok(error instanceof WaitTimeoutError);
    assert.deepEqual(error.holders.map((h) => `${h.key}:${h.owner}:${h.state}`), ['dw/timeout:backup-7:held']);
    assert.equal(error.holders[0]!.metadata['message'], 'Backup in progress');
    assert.match(error.message, /Backup in progress/);
    assert.deepEqual((await holder.list()).waiters, []);
    await held.release();
    await sleep(50);
    assert.deepEqual(await holder.list(), { locks: [], waiters: [] }, 'a lease was stranded for the timed-out waiter');
    assert.deepEqual((await holder.history({ owner: 'waiter' })).map((e) => e.type), []);
  });

  it('an aborted wait throws the abort reason and leaves no queue entry or lease', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const waiter = await ctx.open({ owner: 'waiter' });
    const held = await holder.acquire('dw/abort');
    const abort = new AbortController();
    const waiting = background(waiter.acquire('dw/abort', { waitMs: 20_000, signal: abort.signal }));
    await waitForWaiters(holder, 1);
    const reason = new Error('operator cancelled');
    abort.abort(reason);
    await assert.rejects(waiting, (error) => error === reason);
    assert.deepEqual((await holder.list()).waiters, []);
    await held.release();
    await sleep(50);
    assert.deepEqual(await holder.list(), { locks: [], waiters: [] });
  });

  it('an already aborted signal gets nothing, even on a free key', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const reason = new Error('too late');
    const signal = AbortSignal.abort(reason);
    await assert.rejects(a.acquire('dw/free-aborted', { signal }), (error) => error === reason);
    await assert.rejects(a.acquire('dw/free-aborted', { signal, waitMs: 5000 }), (error) => error === reason);
    assert.deepEqual(await a.list(), { locks: [], waiters: [] });
    assert.deepEqual(await a.history(), []);
  });

  it('closing a Locks object ends its waits and takes them out of the queue', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const waiter = await ctx.open({ owner: 'waiter' });
    const behind = await ctx.open({ owner: 'behind' });
    const held = await holder.acquire('dw/close');
    const waiting = background(waiter.acquire('dw/close', { waitMs: 20_000 }));
    await waitForWaiters(holder, 1);
    const next = background(behind.acquire('dw/close', { waitMs: 20_000 }));
    await waitForWaiters(holder, 2);
    await waiter.close();
    await assert.rejects(waiting);
    assert.deepEqual(waitingOwners(await holder.list(), 'dw/close'), ['behind']);
    assert.ok(await isPending(next));
    await held.release();
    assert.equal((await next).owner, 'behind');
  });

  it('a batched heartbeat (keepAlive) keeps queued tickets in place past their waiterTtlMs; a granted, cancelled or unknown ticket is not in its answer', TIMEOUT, async (t) => {
    const holder = await ctx.open({ owner: 'holder' });
    const store = holder.store;
    if (typeof store.keepAlive !== 'function') {
      // Without it, each waiter polls its own ticket (the other tests of this file).
      t.skip(`${store.info.kind} has no batched heartbeat`);
      return;
    }
    const held = await holder.acquire('dw/batch', { ttlMs: 30_000 });
    const queue = async (owner: string): Promise<string> => {
      const outcome = await store.acquire(storeRequest({ owner, resources: ['dw/batch'] }), { waitMs: 60_000, waiterTtlMs: 600 });
      assert.ok(outcome.status === 'queued');
      return outcome.ticket;
    };
    const first = await queue('first');
    const second = await queue('second');
    const left = await queue('left');
    assert.equal(await store.cancel(left), false);
    // Kept alive only by keepAlive, three times its waiterTtlMs.
    const until = performance.now() + 1800;
    while (performance.now() < until) {
      assert.deepEqual((await store.keepAlive([first, second, left, 'no-such-ticket'])).sort(), [first, second].sort());
      await sleep(150);
    }
    assert.deepEqual(waitingOwners(await holder.list(), 'dw/batch'), ['first', 'second']);
    await held.release();
    await eventually(async () => assert.deepEqual(holdingOwners(await holder.list(), 'dw/batch'), ['first']), 5000, 20);
    const alive = await store.keepAlive([first, second]);
    assert.deepEqual(alive, [second], 'the granted ticket is no longer queued');
    assert.ok((await store.poll(first)).status === 'granted');
    assert.equal(await store.cancel(second), false);
    assert.equal(await store.release(first), true);
    assert.deepEqual(await store.keepAlive([]), []);
  });
});
