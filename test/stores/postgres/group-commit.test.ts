/**
 * Group commit (group-commit.ts, migration 2's hf_batch): operations issued while others are in
 * flight share one call; each keeps its own answer and error, in order; an operation that would
 * wait for a lock while its batch holds others is deferred to the next call, never deadlocked.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { InvalidRequestError } from '../../../src/model/errors.js';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';
import { dropSchema, freshSchema, holdPath, openStore, POSTGRES_URL, request, sleep } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

/** A pool that records the function each query calls (`hf_acquire`, `hf_batch`, ...). */
function countingPool(): { pool: pg.Pool; calls: string[] } {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4, allowExitOnIdle: true });
  const calls: string[] = [];
  const query = pool.query.bind(pool) as (text: string, values?: unknown[]) => Promise<pg.QueryResult>;
  (pool as unknown as { query: typeof query }).query = (text: string, values?: unknown[]) => {
    const fn = /\.(hf_\w+)\(/.exec(text)?.[1];
    if (fn !== undefined) calls.push(fn);
    return query(text, values);
  };
  return { pool, calls };
}

describe('postgres store: group commit', () => {
  const schema = freshSchema();
  const { pool, calls } = countingPool();
  let store: PostgresStore | null = null;
  const open = async (): Promise<PostgresStore> => {
    store ??= await openStore(schema, { pool, listen: false, batchLanes: 1, batchSize: 32, autoSweep: false });
    return store;
  };
  after(async () => {
    await store?.close();
    await pool.end();
    await dropSchema(schema);
  });

  test('a lone caller sends a plain call; concurrent callers share calls, each with its own lease', async () => {
    const s = await open();
    calls.length = 0;
    const alone = await s.acquire(request({ owner: 'a', resources: ['gc-alone/k'] }), once);
    assert.equal(alone.status, 'granted');
    assert.deepEqual(calls, ['hf_acquire']);
    await new Promise(setImmediate); // the lane is free again after the turn that answered
    calls.length = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => s.acquire(request({ owner: `o${i}`, resources: [`gc-many/k${i}`] }), once)),
    );
    assert.ok(outcomes.every((o) => o.status === 'granted'));
    const fences = outcomes.map((o) => (o.status === 'granted' ? o.lease.fence : 0));
    assert.equal(new Set(fences).size, 20);
    // The first went alone; the 19 that queued meanwhile went in one batch (batchLanes: 1).
    assert.deepEqual(calls, ['hf_acquire', 'hf_batch']);
    // Fences follow the order of the calls (FIFO through the queue and the batch).
    assert.deepEqual(fences, [...fences].sort((x, y) => x - y));
    const released = await Promise.all(outcomes.map((o) => (o.status === 'granted' ? s.release(o.lease.id) : false)));
    assert.ok(released.every((r) => r === true));
    assert.equal((await s.list({ prefix: 'gc-many' })).locks.length, 0);
  });

  test('an operation of a batch that fails gets its own error; the others are done', async () => {
    const s = await open();
    const first = await s.acquire(request({ owner: 'a', resources: ['gc-err/a'] }), once);
    assert.equal(first.status, 'granted');
    // Two keys: hf_acquire takes the full path in the same call, which fails on the used id.
    const reused = request({ owner: 'b', resources: ['gc-err/b', 'gc-err/b2'] }, first.status === 'granted' ? first.lease.id : undefined);
    await new Promise(setImmediate);
    calls.length = 0;
    const blocker = s.acquire(request({ owner: 'c', resources: ['gc-err/c'] }), once);
    const [bad, good, renewed] = await Promise.allSettled([
      s.acquire(reused, once),
      s.acquire(request({ owner: 'd', resources: ['gc-err/d'] }), once),
      s.renew(first.status === 'granted' ? first.lease.id : '', 30_000),
    ]);
    await blocker;
    assert.deepEqual(calls, ['hf_acquire', 'hf_batch']);
    assert.equal(bad.status, 'rejected');
    assert.ok(bad.reason instanceof InvalidRequestError, String(bad.reason));
    assert.equal(bad.reason.field, 'id');
    assert.equal(good.status === 'fulfilled' && good.value.status, 'granted');
    assert.equal(renewed.status === 'fulfilled' && renewed.value.status, 'renewed');
    assert.equal((await s.list({ prefix: 'gc-err/b' })).locks.length, 0, 'the failed acquire changed nothing');
  });

  test('an operation that would wait for a lock inside a batch is deferred, and so is every later one, in order', async () => {
    const s = await open();
    const held = await holdPath(schema, 'gc-wait/k');
    let heldReleased = false;
    try {
      await new Promise(setImmediate);
      calls.length = 0;
      const lead = s.acquire(request({ owner: 'lead', resources: ['gc-lead/k'] }), once);
      const done: string[] = [];
      const track = <T>(name: string, p: Promise<T>): Promise<T> => p.finally(() => done.push(name));
      const before = track('before', s.acquire(request({ owner: 'x', resources: ['gc-free/1'] }), once));
      const blocked = track('blocked', s.acquire(request({ owner: 'y', resources: ['gc-wait/k'] }), once));
      const after = track('after', s.acquire(request({ owner: 'z', resources: ['gc-free/2'] }), once));
      await lead;
      assert.equal((await before).status, 'granted');
      await sleep(150);
      // 'blocked' waits for the lock (first in its call now); 'after' is queued behind it.
      assert.deepEqual(done, ['before']);
      heldReleased = true;
      await held.release();
      assert.equal((await blocked).status, 'granted');
      assert.equal((await after).status, 'granted');
      assert.deepEqual(done, ['before', 'blocked', 'after']);
      // 'lead' alone (or with the others), then a batch that deferred 'blocked' and 'after', then theirs.
      assert.deepEqual(calls.filter((c) => c !== 'hf_acquire'), ['hf_batch', 'hf_batch']);
    } finally {
      if (!heldReleased) await held.release();
    }
  });

  test('an operation aborted while queued is not sent', async () => {
    const s = await open();
    const held = await holdPath(schema, 'gc-abort/k');
    try {
      calls.length = 0;
      const stuck = s.acquire(request({ owner: 'a', resources: ['gc-abort/k'] }), once);
      await sleep(50);
      const controller = new AbortController();
      const queued = s.acquire(request({ owner: 'b', resources: ['gc-abort/other'] }), { ...once, signal: controller.signal });
      controller.abort(new Error('not wanted'));
      await assert.rejects(queued, /not wanted/);
      await held.release();
      assert.equal((await stuck).status, 'granted');
      assert.deepEqual(calls, ['hf_acquire']);
      assert.equal((await s.list({ prefix: 'gc-abort/other' })).locks.length, 0);
    } finally {
      await held.release().catch(() => {});
    }
  });
});
