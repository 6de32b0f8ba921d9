import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';
import type { StoreChange } from '../../../src/stores/store.js';
import { admin, dropSchema, freshSchema, holdRoot, openStore, POSTGRES_URL, request, sleep } from './helpers.js';

const wait = { waitMs: 10_000, waiterTtlMs: 10_000 };
const once = { waitMs: 0, waiterTtlMs: 5000 };

/** Resolves with the first change that grants `ticket`. */
function grantOf(store: PostgresStore, ticket: string, timeoutMs = 5000): Promise<StoreChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unwatch();
      reject(new Error(`no grant notice for ${ticket} within ${timeoutMs} ms`));
    }, timeoutMs);
    const unwatch = store.watch((change) => {
      if (!change.granted.includes(ticket)) return;
      clearTimeout(timer);
      unwatch();
      resolve(change);
    });
  });
}

describe('postgres store: push wake-ups across processes', () => {
  const schema = freshSchema();
  let first: PostgresStore;
  let second: PostgresStore;
  before(async () => {
    first = await openStore(schema);
    second = await openStore(schema);
  });
  after(async () => {
    await first.close();
    await second.close();
    await dropSchema(schema);
  });

  test('a release through one store object wakes the waiter of another (NOTIFY)', async () => {
    const held = request({ owner: 'a', resources: ['n/k'] });
    assert.equal((await first.acquire(held, once)).status, 'granted');
    const waiter = request({ owner: 'b', resources: ['n/k/sub'] });
    const notice = grantOf(second, waiter.id);
    assert.equal((await second.acquire(waiter, wait)).status, 'queued');
    const startedAt = performance.now();
    assert.equal(await first.release(held.id), true);
    const change = await notice;
    assert.ok(performance.now() - startedAt < 1000);
    assert.equal(change.type, 'acquired');
    assert.deepEqual(change.keys, ['n/k/sub']);
    assert.equal(change.owner, 'b');
    assert.ok(change.fence !== null && change.fence > 0);
    assert.equal((await second.poll(waiter.id)).status, 'granted');
    await second.release(waiter.id);
  });

  test('an expiry settled by the auto-sweep of one object hands off to the waiter of another', async () => {
    const held = request({ owner: 'a', resources: ['n/exp'], ttlMs: 1000 });
    assert.equal((await first.acquire(held, once)).status, 'granted');
    const waiter = request({ owner: 'b', resources: ['n/exp'] });
    const notice = grantOf(second, waiter.id);
    assert.equal((await second.acquire(waiter, wait)).status, 'queued');
    await notice;
    const events = await first.history({ key: 'n/exp', limit: 2 });
    assert.deepEqual(events.map((e) => e.type), ['acquired', 'expired']);
    await second.release(waiter.id);
  });

  test('the LISTEN connection reconnects after it is killed, and grants made meanwhile are announced', async () => {
    const pid = second.listenerPid;
    assert.ok(pid !== null && second.listening);
    const held = request({ owner: 'a', resources: ['n/re'] });
    assert.equal((await first.acquire(held, once)).status, 'granted');
    const waiter = request({ owner: 'b', resources: ['n/re'] });
    const notice = grantOf(second, waiter.id, 10_000);
    assert.equal((await second.acquire(waiter, wait)).status, 'queued');
    await admin('SELECT pg_terminate_backend($1)', [pid]);
    for (let i = 0; i < 100 && second.listening; i++) await sleep(10);
    // Granted while the LISTEN connection is (most likely) down.
    assert.equal(await first.release(held.id), true);
    await notice;
    for (let i = 0; i < 500 && !second.listening; i++) await sleep(10);
    assert.ok(second.listening, 'the LISTEN connection did not come back');
    assert.notEqual(second.listenerPid, pid);
    // And pushes work again afterwards.
    const next = request({ owner: 'c', resources: ['n/re'] });
    const again = grantOf(second, next.id);
    assert.equal((await second.acquire(next, wait)).status, 'queued');
    await first.release(waiter.id);
    await again;
    await second.release(next.id);
  });
});

describe('postgres store: work under a root another transaction holds is deferred, then done', () => {
  const schema = freshSchema();
  let store: PostgresStore;
  before(async () => {
    // No timer sweeps: a sweep would wait for the root this test holds in an idle transaction.
    store = await openStore(schema, { autoSweep: false });
  });
  after(async () => {
    await store.close();
    await dropSchema(schema);
  });

  test('a promotion that needs a busy root is granted by the follow-up', async () => {
    const held = request({ owner: 'h', resources: ['da/k'] });
    assert.equal((await store.acquire(held, once)).status, 'granted');
    const waiter = request({ owner: 'w', resources: ['da/k', 'db/k'] });
    assert.equal((await store.acquire(waiter, wait)).status, 'queued');
    const notice = grantOf(store, waiter.id);
    const root = await holdRoot(schema, 'db');
    assert.equal(await store.release(held.id), true);
    await sleep(200);
    // Still waiting: the grant needs `db`, which the other transaction holds.
    const table = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.waiters`);
    assert.equal(table[0]!.n, 1);
    await root.release();
    const change = await notice;
    assert.deepEqual(change.keys, ['da/k', 'db/k']);
    await store.release(waiter.id);
  });

  test('an expired lease under a busy root confers nothing, its lock-delay still holds, and it is settled later', async () => {
    const plain = request({ owner: 'p', resources: ['ea/x', 'eb/x'], ttlMs: 150 });
    const delayed = request({ owner: 'd', resources: ['ea/y', 'eb/y'], ttlMs: 150, lockDelayMs: 2000 });
    assert.equal((await store.acquire(plain, once)).status, 'granted');
    assert.equal((await store.acquire(delayed, once)).status, 'granted');
    // While `eb` is held elsewhere, operations on `ea` run on a connection of their own (no
    // store object: its follow-up would wait for `eb` while holding `ea`, and this test's
    // transaction waits for the test).
    const root = await holdRoot(schema, 'eb');
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    const acquire = async (owner: string, key: string): Promise<Record<string, unknown>> => {
      const req = request({ owner, resources: [key] });
      // The full path (what the store sends when the lean call answers `retry`: here, an expired
      // lease on the key).
      const { rows } = await client.query(`SELECT ${schema}.hf_acquire_full($1, 0, 5000, 'test') AS r`, [JSON.stringify(req)]);
      return rows[0].r as Record<string, unknown>;
    };
    try {
      await sleep(250);
      const granted = await acquire('n', 'ea/x');
      assert.equal((granted['value'] as { status: string }).status, 'granted');
      assert.deepEqual([...(granted['roots'] as string[])].sort(), ['ea', 'eb'], 'the expiry was deferred');
      const blocked = await acquire('n', 'ea/y');
      const value = blocked['value'] as { status: string; holders: Array<{ key: string; owner: string; state: string }> };
      assert.equal(value.status, 'busy');
      assert.deepEqual(value.holders.map((h) => [h.key, h.owner, h.state]), [['ea/y', 'd', 'delayed']]);
      assert.equal((await store.history({ owner: 'p', limit: 1 }))[0]!.type, 'acquired');
    } finally {
      await client.end();
      await root.release();
    }
    await store.sweep();
    assert.equal((await store.history({ owner: 'p', limit: 1 }))[0]!.type, 'expired');
    const delays = await admin<{ key: string }>(`SELECT key FROM ${schema}.delays ORDER BY key`);
    assert.deepEqual(delays.map((d) => d.key), ['ea/y', 'eb/y']);
  });
});
