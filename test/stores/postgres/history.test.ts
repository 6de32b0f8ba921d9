/**
 * The history limit: sweeps keep about `historyLimit` events (deleting ids more than that far
 * below the newest), and an ended lease whose events were pruned renews as NOT_FOUND.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { openLocks } from '../../../src/engine/open.js';
import { InvalidRequestError, NotFoundError } from '../../../src/model/errors.js';
import { createPostgresStore, POSTGRES_DEFAULTS, type PostgresStore } from '../../../src/stores/postgres/store.js';
import { admin, dropSchema, freshSchema, openStore, POSTGRES_URL, request } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

describe('postgres store: history limit', () => {
  const schema = freshSchema();
  const table = `${pg.escapeIdentifier(schema)}.history`;
  let store: PostgresStore;
  before(async () => {
    store = await openStore(schema, { historyLimit: 1000, autoSweep: false });
  });
  after(async () => {
    await store.close();
    await dropSchema(schema);
  });

  /** Appends `n` events of owner `filler` straight into the table, as many operations would. */
  const fill = (n: number): Promise<unknown> =>
    admin(
      `INSERT INTO ${table} (at, type, owner, fence, resources, lease_id)
       SELECT 0, 'released', 'filler', g, '[]', 'filler-' || g FROM generate_series(1, $1) g`,
      [n],
    );
  const bounds = async (): Promise<{ min: number; max: number; count: number }> => {
    const rows = await admin<{ min: string; max: string; count: number }>(`SELECT min(id), max(id), count(*)::int AS count FROM ${table}`);
    return { min: Number(rows[0]!.min), max: Number(rows[0]!.max), count: rows[0]!.count };
  };

  test('the option is validated and defaults to 100000', () => {
    assert.equal(POSTGRES_DEFAULTS.historyLimit, 100_000);
    for (const bad of [999, 1.5, '5000', 2_000_000_000]) {
      assert.throws(
        () => createPostgresStore(POSTGRES_URL, { historyLimit: bad as number }),
        (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.historyLimit',
      );
    }
  });

  test('below the limit a sweep prunes nothing', async () => {
    const held = request({ owner: 'few', resources: ['hist/few'] });
    assert.equal((await store.acquire(held, once)).status, 'granted');
    await store.release(held.id);
    await fill(500);
    const before = await bounds();
    await store.sweep();
    assert.deepEqual(await bounds(), before);
  });

  test('a sweep keeps the newest historyLimit events; a pruned ended lease renews as NOT_FOUND', async () => {
    const old = request({ owner: 'old', resources: ['hist/old'] });
    assert.equal((await store.acquire(old, once)).status, 'granted');
    assert.equal(await store.release(old.id), true);
    assert.equal((await store.renew(old.id, 5000)).status, 'lost', 'an ended lease whose events are kept is LEASE_LOST');
    await fill(1500);
    const live = request({ owner: 'live', resources: ['hist/live'] });
    assert.equal((await store.acquire(live, once)).status, 'granted');
    const newest = (await store.history({ limit: 1 }))[0]!;

    await store.sweep();
    // The newest event is the live lease's grant, read from its lease row; the table holds ended
    // leases (one row each), and keeps those whose end is among the newest historyLimit ids.
    assert.equal(newest.type, 'acquired');
    assert.equal(newest.owner, 'live');
    const after = await bounds();
    assert.equal(after.max, newest.id - 1, 'the newest ended lease is kept');
    assert.equal(after.min, newest.id - 999);
    assert.equal(after.count, 999);
    assert.deepEqual((await store.history({ limit: 1 }))[0], newest);
    assert.equal((await store.history({ owner: 'old' })).length, 0);
    // The ended lease is forgotten: NOT_FOUND rather than LEASE_LOST (documented tradeoff).
    assert.equal((await store.renew(old.id, 5000)).status, 'unknown');
    // A live lease does not need its history: it renews, and its end is recorded again.
    assert.equal((await store.renew(live.id, 5000)).status, 'renewed');
    assert.equal(await store.release(live.id), true);
    assert.equal((await store.renew(live.id, 5000)).status, 'lost');
    // A second sweep right away has (almost) nothing to do.
    await store.sweep();
    assert.ok((await bounds()).count <= 1000);
  });

  test('through the engine: renewing a pruned ended lease is NOT_FOUND', async () => {
    const locks = await openLocks(POSTGRES_URL, { owner: 'engine', storeOptions: { schema, historyLimit: 1000, autoSweep: false, poolSize: 2, listen: false } });
    try {
      const lease = await locks.acquire('hist/engine', { ttlMs: 5000 });
      await lease.release();
      await fill(1200);
      await locks.store.sweep();
      await assert.rejects(locks.renew(lease.id, { ttlMs: 5000 }), NotFoundError);
    } finally {
      await locks.close();
    }
  });

  test('a backlog larger than one sweep is worked off by the following sweeps', async () => {
    await fill(12_000);
    const before = await bounds();
    await store.sweep();
    assert.equal((await bounds()).count, before.count - 5000, 'one sweep deletes at most 10 batches (5000 events)');
    for (let i = 0; i < 5 && (await bounds()).count > 1000; i++) await store.sweep();
    const done = await bounds();
    assert.equal(done.count, 1000);
    assert.equal(done.min, done.max - 999);
  });
});
