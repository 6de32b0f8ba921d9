/**
 * Durability across a PostgreSQL restart (SPEC 3.10, 3.3, 3.11), on a private cluster of this
 * test (cluster.ts): the machine's shared cluster, which other tests use at the same time, is
 * never stopped.
 *   - `pg_ctl restart -m immediate` (a crash, WAL recovery): the lease is still there, queued
 *     waiters keep their places, the fences issued afterwards are higher than every earlier one.
 *   - an outage longer than the TTL: renewals fail with STORE_UNAVAILABLE, nothing is granted to
 *     anyone, the holder fences itself before `expiresAt`, and after the restart the next holder
 *     starts only after that: nobody ever saw two holders.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openLocks } from '../../../src/engine/open.js';
import type { Locks } from '../../../src/engine/locks.js';
import { HoldfastError } from '../../../src/model/errors.js';
import { createPostgresStore, type PostgresStore } from '../../../src/stores/postgres/store.js';
import { clusterUnavailable, PrivateCluster } from './cluster.js';
import { keepAlive, request, sleep } from './helpers.js';

// Outside CI a machine without PostgreSQL's server binaries skips these; in CI they must run.
const unavailable = clusterUnavailable();
if (unavailable && process.env['CI']) throw new Error(`CI needs a private PostgreSQL cluster for the restart tests: ${unavailable}`);
const skip = unavailable ?? false;

const isCode = (code: string) => (error: unknown): boolean => {
  assert.ok(error instanceof HoldfastError, `expected ${code}, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return true;
};

describe('postgres store: a PostgreSQL restart', { skip }, () => {
  let cluster: PrivateCluster;
  const opened: Array<{ close(): Promise<void> }> = [];
  const storeOptions = { schema: 'holdfast', poolSize: 2, reconnectMinMs: 20, reconnectMaxMs: 300 };

  async function locksFor(owner: string, waiterTtlMs = 5000): Promise<Locks> {
    const locks = await openLocks(cluster.url, { owner, waiterTtlMs, storeOptions });
    opened.push(locks);
    await (locks.store as PostgresStore).ready();
    return locks;
  }
  async function rawStore(): Promise<PostgresStore> {
    const store = createPostgresStore(cluster.url, storeOptions);
    opened.push(store);
    await store.ready();
    return store;
  }

  before(async () => {
    cluster = await PrivateCluster.create();
  });
  after(async () => {
    // Pools and LISTEN connections first (also when a test failed), then the cluster.
    await Promise.allSettled(opened.map((o) => o.close()));
    await cluster?.destroy();
  });

  test('after pg_ctl restart -m immediate the lease is there, waiters keep their places, fences go on rising', async () => {
    const holder = await locksFor('holder');
    const second = await locksFor('w1', 15_000);
    const raw = await rawStore();
    let highest = 0;
    for (let i = 0; i < 3; i++) {
      const other = await holder.acquire(`restart/other${i}`, { ttlMs: 5000 });
      highest = Math.max(highest, other.fence);
      await other.release();
    }
    const lease = await holder.acquire('restart/k', { ttlMs: 30_000 });
    highest = Math.max(highest, lease.fence);
    // Waiter 1 waits through the engine (its polls fail during the restart and go on); waiter 2
    // is a raw ticket with a long heartbeat period.
    const first = second.acquire('restart/k', { waitMs: 60_000, ttlMs: 30_000 });
    first.catch(() => {});
    let before = await raw.list({ prefix: 'restart/k' });
    for (let i = 0; i < 200 && before.waiters.length === 0; i++) {
      await sleep(10);
      before = await raw.list({ prefix: 'restart/k' });
    }
    const w2 = request({ owner: 'w2', resources: ['restart/k'], ttlMs: 30_000 });
    assert.equal((await raw.acquire(w2, { waitMs: 60_000, waiterTtlMs: 60_000 })).status, 'queued');
    before = await raw.list({ prefix: 'restart/k' });
    assert.deepEqual(before.waiters.map((w) => [w.owner, w.position]), [['w1', 1], ['w2', 2]]);

    const run = await cluster.startedAt();
    await cluster.restart();
    await cluster.reachable();
    assert.notEqual(await cluster.startedAt(), run, 'the server did not restart');
    assert.match(cluster.log(), /not properly shut down|interrupted/, 'no crash recovery in the server log');

    // A store object opened after the restart sees the same table.
    const observer = await rawStore();
    const after = await observer.list({ prefix: 'restart/k' });
    assert.deepEqual(after.locks.map((l) => [l.owner, l.fence]), [['holder', lease.fence]]);
    assert.deepEqual(after.waiters.map((w) => [w.owner, w.position]), [['w1', 1], ['w2', 2]]);
    assert.equal((await observer.get(lease.id))?.fence, lease.fence);
    assert.ok((await observer.history({ owner: 'holder' })).some((e) => e.type === 'acquired' && e.fence === lease.fence));

    // The holder still holds, and renews over new connections.
    assert.equal(lease.state, 'held');
    await lease.renew();
    assert.equal(lease.state, 'held');

    // Released: waiter 1 is granted, with a fence above every fence issued before the restart.
    assert.equal(await lease.release(), true);
    const granted = await first;
    assert.ok(granted.fence > highest, `fence ${granted.fence} after ${highest}`);
    assert.deepEqual((await observer.list({ prefix: 'restart/k' })).waiters.map((w) => [w.owner, w.position]), [['w2', 1]]);
    assert.equal(await granted.release(), true);
    const third = await observer.poll(w2.id);
    assert.equal(third.status, 'granted');
    if (third.status === 'granted') assert.ok(third.lease.fence > granted.fence);
    assert.equal(await observer.release(w2.id), true);
  });

  test('an outage longer than the TTL: renewals fail, nothing is granted, the holder fences itself first', async () => {
    const holder = await locksFor('h');
    const contender = await locksFor('c');
    const raw = await rawStore();
    const lease = await holder.acquire('outage/k', { ttlMs: 2000 });
    const expiresAt = () => lease.expiresAt.getTime();
    const aborted = new Promise<{ at: number; reason: unknown }>((resolve) => {
      lease.signal.addEventListener('abort', () => resolve({ at: Date.now(), reason: lease.signal.reason }), { once: true });
    });
    let renewed = 0;
    lease.on('renewed', () => renewed++);
    await keepAlive(new Promise((resolve) => lease.once('renewed', resolve)));

    await cluster.stop();
    const outageFrom = Date.now();
    try {
      // The holder's renewals fail with STORE_UNAVAILABLE, and so does everyone else's acquire.
      const renewedBefore = renewed;
      await assert.rejects(lease.renew(), isCode('STORE_UNAVAILABLE'));
      await assert.rejects(contender.tryAcquire('outage/k'), isCode('STORE_UNAVAILABLE'));
      await assert.rejects(contender.acquire('outage/k', { waitMs: 500 }), isCode('STORE_UNAVAILABLE'));
      await assert.rejects(raw.get(lease.id), isCode('STORE_UNAVAILABLE'));

      // Self-fencing: the signal aborts before expiresAt (by the machine's clock, which is the store's here).
      const { at, reason } = await keepAlive(aborted);
      assert.ok(at < expiresAt(), `the signal aborted ${at - expiresAt()} ms after expiresAt`);
      assert.ok(reason instanceof HoldfastError && reason.code === 'LEASE_LOST');
      assert.equal(lease.state, 'lost');
      assert.equal(renewed, renewedBefore, 'a renewal succeeded while the server was down');
      // Stay down until well past the expiry.
      while (Date.now() < expiresAt() + 500) await sleep(50);
    } finally {
      await cluster.start();
    }
    await cluster.reachable();
    assert.ok(Date.now() - outageFrom > 2000);

    // The lease expired by the store's clock: renewing it is LEASE_LOST, and the contender gets the key.
    assert.equal((await raw.renew(lease.id, 2000)).status, 'lost');
    await assert.rejects(holder.renew(lease.id), isCode('LEASE_LOST'));
    const next = await contender.acquire('outage/k', { waitMs: 10_000 });
    assert.ok(next.fence > lease.fence);
    const { at: fencedAt } = await aborted;
    assert.ok(fencedAt < expiresAt() && expiresAt() <= next.acquiredAt.getTime(), 'two holders at once');
    // History: one grant to the holder, its expiry, then the contender's grant; nothing else.
    const events = (await raw.history({ key: 'outage/k' })).reverse();
    assert.deepEqual(events.map((e) => [e.type, e.owner]), [['acquired', 'h'], ['expired', 'h'], ['acquired', 'c']]);
    assert.equal(Date.parse(events[1]!.at), expiresAt());
    assert.ok(Date.parse(events[2]!.at) >= Date.parse(events[1]!.at));
    assert.equal(await next.release(), true);
  });
});
