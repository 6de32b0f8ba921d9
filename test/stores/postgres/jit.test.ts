/**
 * No statement inside the store's functions is JIT-compiled. Several functions run with
 * `enable_seqscan = off` (so the planner uses the key indexes even on tables nobody has
 * ANALYZEd); a statement that can only scan (a sequence read, a table without a usable index) is
 * then costed at 1e10, past `jit_above_cost`, and PostgreSQL compiles it on every call: 120-170 ms
 * a sweep, under the sweep's root locks, when hf_prune_history read `event_seq` with a SELECT
 * (migration 6 as first written; the fault harness showed it as wait overruns).
 *
 * Every connection of the store's pool loads auto_explain, which reports each nested statement
 * with its plan as a LOG message to the client; the operations below cover every function the
 * store calls. The test fails naming each statement whose plan says `JIT:`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';
import { dropSchema, freshSchema, openStore, POSTGRES_URL, request, sleep } from './helpers.js';

describe('postgres store: no statement is JIT-compiled', () => {
  const schema = freshSchema();
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  const compiled: string[] = [];
  let plans = 0;
  let store: PostgresStore;

  before(async () => {
    pool.on('connect', (client) => {
      client.on('notice', (notice) => {
        const text = String(notice.message);
        if (!text.includes('Query Text:')) return;
        plans++;
        if (text.includes('JIT:')) compiled.push(text.split('\n')[0]!.replace(/^.*Query Text: /, ''));
      });
      // Queued before the store's first query on this connection.
      client.query(`LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
                    SET client_min_messages = log; SET jit = on`).catch(() => {});
    });
    store = await openStore(schema, { pool, historyLimit: 1000, autoSweep: false, listen: false });
  });
  after(async () => {
    await store.close();
    await pool.end();
    await dropSchema(schema);
  });

  test('acquire, queue, poll, hand-off, renew, cancel, ends by owner and by force, expiry, sweeps, reads', async () => {
    const once = { waitMs: 0, waiterTtlMs: 5000 };
    const queue = { waitMs: 10_000, waiterTtlMs: 5000 };
    // Enough events for the sweep to prune (historyLimit 1000).
    for (let i = 0; i < 520; i++) {
      const r = request({ owner: 'fill', resources: [`jit/fill${i % 4}`] });
      assert.equal((await store.acquire(r, once)).status, 'granted');
      assert.equal(await store.release(r.id), true);
    }
    const holder = request({ owner: 'a', resources: ['jit/k'] });
    const waiter = request({ owner: 'b', resources: ['jit/k'] });
    const deep = request({ owner: 'c', resources: ['jit/k/deeper', { key: 'pool', mode: 'shared', limit: 2 }] });
    assert.equal((await store.acquire(holder, once)).status, 'granted');
    assert.equal((await store.acquire(waiter, queue)).status, 'queued');
    assert.equal((await store.acquire(deep, queue)).status, 'queued');
    assert.equal((await store.poll(waiter.id)).status, 'queued');
    assert.equal((await store.renew(holder.id, 5000)).status, 'renewed');
    assert.equal(await store.release(holder.id), true); // hands off to b
    assert.equal((await store.poll(waiter.id)).status, 'granted');
    assert.equal(await store.cancel(deep.id), false);
    const shared = request({ owner: 'd', resources: [{ key: 'pool/x', mode: 'shared', limit: 3 }, 'other/y'], requestId: 'r1' });
    assert.equal((await store.acquire(shared, once)).status, 'granted');
    assert.equal(await store.releaseOwner('d', { by: 'admin' }), 1);
    assert.equal(await store.forceRelease('jit/k', { by: 'admin' }), 1);
    const short = request({ owner: 'e', resources: ['jit/short'], ttlMs: 100, lockDelayMs: 200 });
    assert.equal((await store.acquire(short, once)).status, 'granted');
    await sleep(150);
    await store.sweep();
    await sleep(250);
    await store.sweep();
    assert.ok((await store.history({ limit: 20 })).length > 0);
    await store.history({ owner: 'fill', limit: 5, beforeId: 100 });
    await store.history({ key: 'jit/k' });
    await store.list();
    await store.get(waiter.id);

    assert.ok(plans > 100, `auto_explain reported the nested statements (${plans} plans)`);
    assert.deepEqual([...new Set(compiled)], [], 'statements PostgreSQL JIT-compiled');
  });
});
