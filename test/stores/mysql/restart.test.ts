/**
 * Fences and leases across a crash of the database (SPEC 3.3, 3.10), on a private MariaDB server
 * this test starts itself (server.ts; the shared server on 3306 is never touched), with a session
 * time zone of +05:00 by default (the store's clock is UTC whatever the server's zone).
 *   - `kill -9` of mariadbd during a burst of grants: after the restart every new fence is higher
 *     than every fence acknowledged before the crash; the lease held before it is still there
 *     and a waiter queued before it keeps its place.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createMysqlStore, type MysqlStore } from '../../../src/stores/mysql/store.js';
import { request, sleep } from './helpers.js';
import { mariadbUnavailable, PrivateMariadb } from './server.js';

const unavailable = mariadbUnavailable();
if (unavailable && process.env['CI']) throw new Error(`CI needs a private MariaDB server for the restart tests: ${unavailable}`);

describe('mysql store: kill -9 of mariadbd', { skip: unavailable ?? false }, () => {
  let server: PrivateMariadb;
  const opened: MysqlStore[] = [];
  const open = async (): Promise<MysqlStore> => {
    const store = createMysqlStore(server.url, { poolSize: 4, connectTimeoutMs: 2000 });
    opened.push(store);
    await store.ready();
    return store;
  };

  before(async () => {
    server = await PrivateMariadb.create({ args: ['--default-time-zone=+05:00'] });
  });
  after(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
    await server?.destroy();
  });

  test('fences issued after the restart are higher than every fence acknowledged before the crash', async () => {
    const store = await open();
    const held = request({ key: 'crash/held', ttlMs: 120_000 });
    const heldOutcome = await store.acquire(held, { waitMs: 0, waiterTtlMs: 60_000 });
    assert.equal(heldOutcome.status, 'granted');
    if (heldOutcome.status !== 'granted') return;
    assert.ok(Math.abs(heldOutcome.lease.acquiredAt - Date.now()) < 5000, 'store time is UTC epoch ms whatever the server zone');
    const waiter = request({ key: 'crash/held', owner: 'waiter', ttlMs: 10_000 });
    assert.equal((await store.acquire(waiter, { waitMs: 120_000, waiterTtlMs: 60_000 })).status, 'queued');

    let acknowledged = 0;
    let grants = 0;
    let stop = false;
    const burst = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        try {
          const outcome = await store.acquire(request({ key: `burst/${w}/${i % 2}`, ttlMs: 60_000 }), { waitMs: 0, waiterTtlMs: 3000 });
          if (outcome.status === 'granted') {
            acknowledged = Math.max(acknowledged, outcome.lease.fence);
            grants++;
            await store.release(outcome.lease.id);
          }
        } catch {
          await sleep(20); // the server is down: STORE_UNAVAILABLE until it is back
        }
      }
    };
    const loops = Array.from({ length: 6 }, (_, w) => burst(w));
    while (grants < 100) await sleep(5);
    await server.kill9();
    const beforeCrash = acknowledged;
    await sleep(200);
    await server.start();
    stop = true;
    await Promise.all(loops);

    const after = await open();
    const next = await after.acquire(request({ key: 'crash/after' }), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(next.status, 'granted');
    if (next.status === 'granted') assert.ok(next.lease.fence > acknowledged, `fence ${next.lease.fence} after ${acknowledged} (${beforeCrash} at the kill)`);
    const lease = await after.get(held.id);
    assert.ok(lease !== null, 'the lease held before the crash is still there');
    assert.equal(lease.fence, heldOutcome.lease.fence);
    const table = await after.list({ prefix: 'crash/held' });
    assert.deepEqual(table.waiters.map((w) => w.owner), ['waiter']);
    // The store object from before the crash works again too.
    const again = await store.acquire(request({ key: 'crash/again' }), { waitMs: 0, waiterTtlMs: 3000 }).catch(() =>
      store.acquire(request({ key: 'crash/again' }), { waitMs: 0, waiterTtlMs: 3000 }));
    assert.equal(again.status, 'granted');
    if (again.status === 'granted' && next.status === 'granted') assert.ok(again.lease.fence > next.lease.fence);
  });
});
