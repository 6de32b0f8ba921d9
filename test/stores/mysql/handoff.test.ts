/**
 * Migration 3's `hf_release_handoff`: the one-CALL release that hands a one-key lease to its first
 * waiter. Called directly, it must hand over exactly when the full algorithm would grant that
 * waiter and nothing else, and change nothing otherwise; the store's release (the full path) then
 * decides those cases. Through `Locks`, hand-offs under a contended root go through it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openLocks, type Locks } from '../../../src/index.js';
import type { LockRequest } from '../../../src/model/types.js';
import { createMysqlStore, type MysqlStore } from '../../../src/stores/mysql/store.js';
import { createMysqlDatabase, mysqlAdmin, MYSQL_URL, request, sleep, type TestDatabase } from './helpers.js';

type HandoffRow = Record<string, unknown>;

describe('mysql store: the one-CALL hand-off', () => {
  let db: TestDatabase;
  let s: MysqlStore;
  const opened: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    db = await createMysqlDatabase(MYSQL_URL, 'hf_test');
    // No sweep timer: a waiter that timed out stays in its table until an operation settles it.
    s = createMysqlStore(db.url, { poolSize: 4, autoSweep: false });
    opened.push(s);
    await s.ready();
  });
  after(async () => {
    await Promise.allSettled(opened.map((o) => o.close()));
    await db?.drop();
  });

  const call = async (leaseId: string, root: string): Promise<HandoffRow> => {
    const results = (await mysqlAdmin(db.url, 'CALL hf_release_handoff(?, ?, ?)', [leaseId, root, 'test-origin'])) as HandoffRow[][];
    return results[0]![0]!;
  };
  const hold = async (input: Parameters<typeof request>[0]): Promise<{ id: string; fence: number }> => {
    const outcome = await s.acquire(request(input), { waitMs: 0, waiterTtlMs: 10_000 });
    assert.equal(outcome.status, 'granted');
    return outcome.status === 'granted' ? outcome.lease : { id: '', fence: 0 };
  };
  const queue = async (input: Parameters<typeof request>[0], waitMs = 10_000): Promise<LockRequest> => {
    const waiter = request(input);
    assert.equal((await s.acquire(waiter, { waitMs, waiterTtlMs: 10_000 })).status, 'queued');
    return waiter;
  };
  const status = async (id: string): Promise<string> => (await s.poll(id)).status;

  test('hands a one-key lease to its first waiter, an exclusive request for that key: one new lease, one change-log row', async () => {
    const holder = await hold({ key: 'h/k', owner: 'holder' });
    const first = await queue({ key: 'h/k', owner: 'first', metadata: { step: 1 }, ttlMs: 12_000 });
    const second = await queue({ key: 'h/k', owner: 'second' });
    const row = await call(holder.id, 'h');
    assert.equal(Number(row['fence']), holder.fence);
    assert.equal(String(row['g_id']), first.id);
    assert.ok(Number(row['g_fence']) > holder.fence);
    assert.equal(Number(row['g_expires_at']) - Number(row['now']), 12_000);
    assert.equal(await s.get(holder.id), null);
    const granted = await s.poll(first.id);
    assert.equal(granted.status, 'granted');
    if (granted.status === 'granted') {
      assert.equal(granted.lease.fence, Number(row['g_fence']));
      assert.equal(granted.lease.owner, 'first');
      assert.deepEqual(granted.lease.metadata, { step: 1 });
    }
    assert.equal(await status(second.id), 'queued');
    const log = (await mysqlAdmin(db.url, 'SELECT origin, ticket, fence, keys_json FROM hf_changes WHERE ticket = ?', [first.id])) as HandoffRow[];
    assert.equal(log.length, 1);
    assert.equal(String(log[0]!['origin']), 'test-origin');
    assert.equal(Number(log[0]!['fence']), Number(row['g_fence']));
    assert.deepEqual(JSON.parse(String(log[0]!['keys_json'])), ['h/k']);
    const history = await s.history({ key: 'h/k' });
    assert.ok(history.some((e) => e.type === 'released' && e.fence === holder.fence && e.owner === 'holder'));
    // A lease with no related waiter is simply released.
    assert.equal(await s.release(first.id), true);
    assert.equal(await status(second.id), 'granted');
    const alone = await call(second.id, 'h');
    assert.ok(alone['fence'] !== null);
    assert.equal(alone['g_id'], null);
    assert.equal(await s.get(second.id), null);
  });

  test('changes nothing when the full algorithm decides otherwise, which the store release then does', async () => {
    // Each case: what is held and queued, and what the full path's release must then leave granted.
    const cases: Array<{ name: string; setup(): Promise<{ holder: { id: string }; root: string; check(): Promise<void> }> }> = [
      {
        name: 'the first waiter is shared (both shared waiters are granted together)',
        async setup() {
          const holder = await hold({ key: 'a/k' });
          const r1 = await queue({ resources: [{ key: 'a/k', mode: 'shared' }] });
          const r2 = await queue({ resources: [{ key: 'a/k', mode: 'shared' }] });
          return { holder, root: 'a', check: async () => assert.deepEqual([await status(r1.id), await status(r2.id)], ['granted', 'granted']) };
        },
      },
      {
        name: 'the first waiter asks for two keys',
        async setup() {
          const holder = await hold({ key: 'b/k' });
          const w = await queue({ resources: [{ key: 'b/k' }, { key: 'b/j' }] });
          return { holder, root: 'b', check: async () => assert.equal(await status(w.id), 'granted') };
        },
      },
      {
        name: 'the first waiter asks for a descendant of the key',
        async setup() {
          const holder = await hold({ key: 'c/k' });
          const w = await queue({ key: 'c/k/x' });
          return { holder, root: 'c', check: async () => assert.equal(await status(w.id), 'granted') };
        },
      },
      {
        name: 'another shared holder still holds the key',
        async setup() {
          const holder = await hold({ resources: [{ key: 'd/k', mode: 'shared' }] });
          await hold({ resources: [{ key: 'd/k', mode: 'shared' }] });
          const w = await queue({ key: 'd/k' });
          return { holder, root: 'd', check: async () => assert.equal(await status(w.id), 'queued') };
        },
      },
      {
        name: 'the first waiter has timed out (the next one is granted)',
        async setup() {
          const holder = await hold({ key: 'e/k' });
          const gone = await queue({ key: 'e/k' }, 300);
          const next = await queue({ key: 'e/k' });
          await sleep(450);
          return {
            holder, root: 'e',
            check: async () => {
              assert.equal(await status(next.id), 'granted');
              assert.notEqual(await status(gone.id), 'granted');
            },
          };
        },
      },
      {
        name: 'the lease holds two keys',
        async setup() {
          const holder = await hold({ resources: [{ key: 'f/k' }, { key: 'f/j' }] });
          const w = await queue({ key: 'f/j' });
          return { holder, root: 'f', check: async () => assert.equal(await status(w.id), 'granted') };
        },
      },
    ];
    for (const c of cases) {
      const { holder, root, check } = await c.setup();
      const row = await call(holder.id, root);
      assert.equal(row['fence'], null, `${c.name}: the procedure changed something`);
      assert.equal(row['g_id'], null, c.name);
      assert.notEqual(await s.get(holder.id), null, `${c.name}: the lease was ended`);
      assert.equal(await s.release(holder.id), true, c.name);
      await check();
    }
  });

  test('through Locks, a stream of hand-offs under one root serves every waiter in order', async () => {
    const locks: Locks = await openLocks(db.url, { owner: 'stream', storeOptions: { poolSize: 4 } });
    opened.push(locks);
    const order: number[] = [];
    const first = await locks.acquire('g/k');
    const waiters = [];
    for (let i = 0; i < 10; i++) {
      waiters.push(locks.acquire('g/k', { waitMs: 20_000 }).then(async (lease) => {
        order.push(i);
        await lease.release();
      }));
      while ((await locks.list({ prefix: 'g/' })).waiters.length < i + 1) await sleep(5);
    }
    await first.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [...order.keys()]);
    assert.equal((await locks.list({ prefix: 'g/' })).locks.length, 0);
  });
});
