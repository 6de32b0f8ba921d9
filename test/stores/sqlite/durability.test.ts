/** The sqlite store over time: reopening, store-clock expiry, several objects on one file, history. */
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { StoreChange } from '../../../src/stores/store.js';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { request, sleep, tempDir } from './helpers.js';

const tmp = tempDir('durability');
after(tmp.remove);

const once = { waitMs: 0, waiterTtlMs: 10_000 };
const wait = { waitMs: 60_000, waiterTtlMs: 60_000 };

describe('sqlite store: durability and time', () => {
  it('keeps leases, the queue and the fence counter across close and reopen', async () => {
    const path = join(tmp.dir, 'reopen.db');
    let store = createSqliteStore(path);
    const spent = await store.acquire(request({ owner: 'a', resources: ['spent'] }), once);
    assert.equal(spent.status, 'granted');
    if (spent.status === 'granted') await store.release(spent.lease.id);
    const held = await store.acquire(request({ owner: 'a', resources: ['pools/P'], metadata: { message: 'kept' } }), once);
    const queued = await store.acquire(request({ owner: 'b', resources: ['pools/P/x'] }), wait);
    assert.equal(held.status, 'granted');
    assert.equal(queued.status, 'queued');
    if (held.status !== 'granted' || queued.status !== 'queued') return;
    assert.equal(held.lease.fence, 2);
    await store.close();
    await store.close(); // twice is harmless
    await assert.rejects(store.get(held.lease.id), { code: 'STORE_UNAVAILABLE' });

    store = createSqliteStore(path);
    try {
      assert.deepEqual(await store.get(held.lease.id), held.lease);
      const table = await store.list();
      assert.deepEqual(table.waiters.map((w) => [w.key, w.owner, w.position]), [['pools/P/x', 'b', 1]]);
      assert.equal((await store.poll(queued.ticket)).status, 'queued');
      assert.equal(await store.release(held.lease.id), true);
      const granted = await store.poll(queued.ticket);
      assert.equal(granted.status, 'granted');
      if (granted.status === 'granted') assert.equal(granted.lease.fence, 3);
      const next = await store.acquire(request({ owner: 'c', resources: ['other'] }), once);
      assert.equal(next.status === 'granted' && next.lease.fence, 4);
      assert.equal((await store.renew(spent.status === 'granted' ? spent.lease.id : '', 1000)).status, 'lost');
    } finally {
      await store.close();
    }
  });

  it('judges expiry by the store clock: a 100 ms lease is gone after 150 ms', async () => {
    const store = createSqliteStore(join(tmp.dir, 'expiry.db'));
    try {
      const outcome = await store.acquire(request({ owner: 'a', resources: ['k'], ttlMs: 100 }), once);
      assert.equal(outcome.status, 'granted');
      if (outcome.status !== 'granted') return;
      assert.equal(outcome.lease.expiresAt, outcome.lease.acquiredAt + 100);
      await sleep(150);
      assert.equal(await store.get(outcome.lease.id), null);
      assert.equal((await store.renew(outcome.lease.id, 1000)).status, 'lost');
      assert.equal(await store.release(outcome.lease.id), false);
      const [expired] = await store.history({ limit: 1 });
      assert.equal(expired?.type, 'expired');
      assert.equal(expired?.reason, 'expiry');
      assert.equal(expired && Date.parse(expired.at), outcome.lease.expiresAt);
    } finally {
      await store.close();
    }
  });

  it('hands an expired lease to the waiter on time, pushed by its own timer', async () => {
    const store = createSqliteStore(join(tmp.dir, 'handoff.db'));
    try {
      const held = await store.acquire(request({ owner: 'dead', resources: ['lb/x'], ttlMs: 600 }), once);
      assert.equal(held.status, 'granted');
      if (held.status !== 'granted') return;
      const queued = await store.acquire(request({ owner: 'next', resources: ['lb/x'] }), wait);
      assert.equal(queued.status, 'queued');
      if (queued.status !== 'queued') return;
      // The store's timer is unref'd (it never keeps a process alive); this guard keeps the test's.
      let guard: NodeJS.Timeout | undefined;
      const granted = await new Promise<StoreChange>((resolve, reject) => {
        guard = setTimeout(() => reject(new Error('no grant pushed within 2 s')), 2000);
        store.watch((c) => c.granted.includes(queued.ticket) && resolve(c));
      }).finally(() => clearTimeout(guard));
      // On time: not before the lease's expiry (store time), and well within a second after it.
      const late = granted.at - held.lease.expiresAt;
      assert.ok(late >= 0 && late < 800, `granted ${late} ms after the expiry`);
    } finally {
      await store.close();
    }
  });

  it('pushes changes between store objects on the same file in one process', async () => {
    mkdirSync(join(tmp.dir, 'real'));
    symlinkSync(join(tmp.dir, 'real'), join(tmp.dir, 'link'));
    const one = createSqliteStore(join(tmp.dir, 'real', 'shared.db'));
    const two = createSqliteStore(join(tmp.dir, 'link', '.', 'shared.db'));
    const other = createSqliteStore(join(tmp.dir, 'other.db'));
    try {
      assert.equal(one.file, two.file);
      const seenByTwo: StoreChange[] = [];
      const seenByOther: StoreChange[] = [];
      two.watch((c) => seenByTwo.push(c));
      other.watch((c) => seenByOther.push(c));
      const held = await one.acquire(request({ owner: 'a', resources: ['k'] }), once);
      const queued = await two.acquire(request({ owner: 'b', resources: ['k'] }), wait);
      assert.equal(held.status, 'granted');
      assert.equal(queued.status, 'queued');
      if (held.status !== 'granted' || queued.status !== 'queued') return;
      await one.release(held.lease.id);
      assert.deepEqual(seenByTwo.map((c) => c.type), ['acquired', 'waiting', 'released', 'acquired']);
      assert.deepEqual(seenByTwo.at(-1)?.granted, [queued.ticket]);
      assert.deepEqual(seenByOther, []);

      await two.close();
      // The remaining object still works and still publishes to its own listeners.
      const seenByOne: StoreChange[] = [];
      one.watch((c) => seenByOne.push(c));
      await one.release(queued.ticket);
      assert.deepEqual(seenByOne.map((c) => c.type), ['released']);
      assert.equal(seenByTwo.length, 4);
    } finally {
      await one.close();
      await two.close();
      await other.close();
    }
  });

  it('prunes the history beyond historyLimit and keeps the newest events', async () => {
    const store = createSqliteStore(join(tmp.dir, 'history.db'), { historyLimit: 1000, synchronous: 'NORMAL' });
    try {
      for (let i = 0; i < 600; i++) {
        const outcome = await store.acquire(request({ owner: 'h', resources: ['k'] }), once);
        if (outcome.status === 'granted') await store.release(outcome.lease.id);
      }
      const events = await store.history({ limit: 5000 });
      assert.equal(events[0]?.id, 1200);
      assert.ok(events.length >= 1000 && events.length < 1100, `${events.length} events kept`);
      assert.deepEqual(events.map((e) => e.id), Array.from({ length: events.length }, (_, i) => 1200 - i));
    } finally {
      await store.close();
    }
  });

  it('refuses a file written by a newer schema version, or one it cannot open', async () => {
    const path = join(tmp.dir, 'newer.db');
    await createSqliteStore(path).close();
    const raw = new Database(path);
    raw.prepare('INSERT INTO holdfast_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(999, 'future', 0);
    raw.close();
    assert.throws(() => createSqliteStore(path), { code: 'STORE_UNAVAILABLE', message: /newer holdfast/ });
    assert.throws(() => createSqliteStore(join(tmp.dir, 'missing', 'dir', 'x.db')), { code: 'STORE_UNAVAILABLE' });
  });
});
