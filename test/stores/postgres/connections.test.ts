/**
 * Dropped connections: the backends of the store's pool are terminated (`pg_terminate_backend`,
 * found by `application_name` in `pg_stat_activity`) while a lease is held and renewing. The next
 * renewal goes over a new connection, an idempotent call caught in flight is sent again, no
 * lease is lost before its TTL and nothing is granted twice.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once as onceEvent } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { openLocks } from '../../../src/engine/open.js';
import type { Locks } from '../../../src/engine/locks.js';
import { StoreUnavailableError } from '../../../src/model/errors.js';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';
import { admin, dropSchema, freshSchema, holdRoot, keepAlive, openStore, POSTGRES_URL, request, sleep, terminateConnections } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

/** Waits until a connection named `applicationName` waits for an advisory lock; its pid. */
async function blockedOnAdvisoryLock(applicationName: string): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const rows = await admin<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
      [applicationName],
    );
    if (rows.length > 0) return rows[0]!.pid;
    await sleep(10);
  }
  throw new Error(`no connection of ${applicationName} came to wait for an advisory lock`);
}

describe('postgres store: dropped pool connections', () => {
  const schema = freshSchema();
  const applicationName = `hf-test-drop-${randomBytes(4).toString('hex')}`;
  let locks: Locks;
  let observer: PostgresStore;
  before(async () => {
    observer = await openStore(schema, { applicationName: `${applicationName}-observer` });
    locks = await openLocks(POSTGRES_URL, { owner: 'holder', storeOptions: { schema, applicationName, poolSize: 4 } });
    await (locks.store as PostgresStore).ready();
  });
  after(async () => {
    await locks.close();
    await observer.close();
    await dropSchema(schema);
  });

  test('the pool and the LISTEN connection carry the application name', async () => {
    await locks.list();
    const rows = await admin<{ application_name: string }>(
      `SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name LIKE $1 ORDER BY 1`, [`${applicationName}%`],
    );
    const names = rows.map((r) => r.application_name);
    assert.ok(names.includes(applicationName), names.join(', '));
    assert.ok(names.includes(`${applicationName} listen`), names.join(', '));
  });

  test('a renewing lease outlives its pool connections being terminated, and nobody else gets it', async () => {
    const lease = await locks.acquire('drop/k', { ttlMs: 1200 });
    const lost: unknown[] = [];
    lease.on('lost', (error) => lost.push(error));
    let renewals = 0;
    lease.on('renewed', () => renewals++);
    // A contender tries all along; each try must find the key busy.
    let contending = true;
    const granted: string[] = [];
    const contender = (async () => {
      while (contending) {
        const out = await observer.acquire(request({ owner: 'contender', resources: ['drop/k'] }), once);
        if (out.status === 'granted') {
          granted.push(out.lease.id);
          await observer.release(out.lease.id);
        }
        await sleep(20);
      }
    })();
    try {
      for (let round = 0; round < 4; round++) {
        await keepAlive(onceEvent(lease, 'renewed'));
        const killed = await terminateConnections(applicationName);
        assert.ok(killed.length > 0, 'no pool connection was found to terminate');
        const before = renewals;
        // The next renewal (due within a third of the TTL) succeeds on a new connection.
        await keepAlive(onceEvent(lease, 'renewed'));
        assert.equal(renewals, before + 1);
        assert.equal(lease.state, 'held');
        const now = await admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
        assert.ok(now.length > 0 && now.every((r) => !killed.includes(r.pid)), 'a terminated connection is still in use');
      }
      assert.deepEqual(lost, []);
      assert.ok(lease.remainingMs > 0);
      assert.ok((await observer.get(lease.id)) !== null);
    } finally {
      contending = false;
      await contender;
    }
    assert.deepEqual(granted, [], 'the key was granted to someone else while the lease was held');
    assert.equal(await lease.release(), true);
    const acquired = (await observer.history({ key: 'drop/k', limit: 100 })).filter((e) => e.type === 'acquired');
    assert.deepEqual(acquired.map((e) => e.owner), ['holder']);
  });

  test('a renewal whose connection is terminated in flight is sent again on a new one', async () => {
    const store = locks.store as PostgresStore;
    const lease = await locks.acquire('inflight/k', { ttlMs: 10_000, autoRenew: false });
    const root = await holdRoot(schema, 'inflight');
    let released = false;
    try {
      const renewal = lease.renew({ ttlMs: 20_000 });
      const pid = await blockedOnAdvisoryLock(applicationName);
      await admin('SELECT pg_terminate_backend($1)', [pid]);
      await sleep(50);
      await root.release();
      released = true;
      await renewal;
      assert.equal(lease.state, 'held');
      assert.equal(lease.ttlMs, 20_000);
      const record = await store.get(lease.id);
      assert.equal(record?.ttlMs, 20_000);
    } finally {
      if (!released) await root.release();
    }
    await lease.release();
  });

  test('a release whose connection is terminated in flight is STORE_UNAVAILABLE and changes nothing', async () => {
    const store = locks.store as PostgresStore;
    const held = request({ owner: 'holder', resources: ['inflight/r'], ttlMs: 10_000 });
    assert.equal((await store.acquire(held, once)).status, 'granted');
    const root = await holdRoot(schema, 'inflight');
    let released = false;
    try {
      const release = store.release(held.id).then((value) => ({ value }), (error: unknown) => ({ error }));
      const pid = await blockedOnAdvisoryLock(applicationName);
      await admin('SELECT pg_terminate_backend($1)', [pid]);
      const outcome = await release;
      assert.ok('error' in outcome && outcome.error instanceof StoreUnavailableError, `release answered ${JSON.stringify(outcome)}`);
      await root.release();
      released = true;
    } finally {
      if (!released) await root.release();
    }
    // The transaction died before it did anything: the lease is still there, and releasing works now.
    assert.ok((await observer.get(held.id)) !== null);
    assert.equal(await store.release(held.id), true);
  });
});

describe('postgres store: an exhausted pool', () => {
  const schema = freshSchema();
  const applicationName = `hf-test-pool-${randomBytes(4).toString('hex')}`;
  after(async () => {
    await dropSchema(schema);
  });

  test('a call that waits too long for a pooled connection says the pool was exhausted, not unreachable', async () => {
    const store = await openStore(schema, { applicationName, poolSize: 1, connectTimeoutMs: 300, listen: false });
    const root = await holdRoot(schema, 'busy');
    try {
      // The only pooled connection waits for the root lock this test holds.
      const stuck = store.acquire(request({ owner: 'a', resources: ['busy/k'] }), once);
      await blockedOnAdvisoryLock(applicationName);
      const error = await store.acquire(request({ owner: 'b', resources: ['free/k'] }), once).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.match(error.message, /connection pool is exhausted: all 1 connections were busy for 300 ms/);
      assert.doesNotMatch(error.message, /cannot reach/);
      await root.release();
      assert.equal((await stuck).status, 'granted');
      // With a connection free again, calls go through.
      assert.equal((await store.acquire(request({ owner: 'b', resources: ['free/k'] }), once)).status, 'granted');
    } finally {
      await root.release().catch(() => {});
      await store.close();
    }
  });
});
