/**
 * The one-row-per-lease layout (migration 3): a file written in the layout before it (leases,
 * their key rows and history events in three tables) is migrated with its live leases, their
 * queue-relevant keys, the fence counter and the kept history; and a pair of operations writes
 * one lease row, no history rows.
 *
 * Counters read from the rows (migration 4): fences and history ids go on one by one from the
 * rows, also when the trim has removed every other row; an older holdfast that writes the
 * counters is refused.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { CREATE_MIGRATIONS_TABLE, MIGRATIONS, RECORD_MIGRATION } from '../../../src/stores/sqlite/migrations.js';
import { request, tempDir } from './helpers.js';

const tmp = tempDir('layout');
after(tmp.remove);

const once = { waitMs: 0, waiterTtlMs: 10_000 };

/** A file in the layout of version 2, with the rows that layout's code wrote. */
function versionTwoFile(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(CREATE_MIGRATIONS_TABLE);
  for (const migration of MIGRATIONS.filter((m) => m.version <= 2)) {
    for (const statement of migration.statements) db.exec(statement);
    db.prepare(RECORD_MIGRATION).run({ version: migration.version, name: migration.name });
  }
  const json = (value: unknown): string => JSON.stringify(value);
  const r = (key: string, mode = 'exclusive', limit: number | null = null) => ({ key, mode, limit });
  const soon = Date.now() + 600_000;
  db.prepare('UPDATE holdfast_meta SET fence = 4, seq = 0, history_id = 5 WHERE id = 1').run();
  const lease = db.prepare(`INSERT INTO holdfast_leases (id, owner, request_id, fence, acquired_at, expires_at, ttl_ms, resources, metadata, lock_delay_ms)
    VALUES (?, ?, NULL, ?, ?, ?, 600000, ?, ?, 0)`);
  const keys = db.prepare(`INSERT INTO holdfast_lease_resources (lease_id, ord, key, mode, lim) VALUES (?, ?, ?, ?, ?)`);
  const event = db.prepare(`INSERT INTO holdfast_history (id, at, type, owner, fence, resources, by, reason, lease_id, origin)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'old-process')`);
  // L1: acquired (1) and released (2). L0: its acquired event pruned, its end (4) kept.
  event.run(1, 1000, 'acquired', 'one', 1, json([r('a')]), null, null, 'L1-aaaaaaaaaaaaaaaaaaaa');
  event.run(2, 2000, 'released', 'one', 1, json([r('a')]), null, 'release', 'L1-aaaaaaaaaaaaaaaaaaaa');
  event.run(4, 4000, 'expired', 'zero', 0, json([r('z')]), null, 'expiry', 'L0-aaaaaaaaaaaaaaaaaaaa');
  // L2: live, two resources, acquired event 3. L3: live, its acquired event pruned.
  const two = [r('b', 'shared', 2), r('c')];
  lease.run('L2-aaaaaaaaaaaaaaaaaaaa', 'two', 2, 3000, soon, json(two), json({ job: 2 }));
  two.forEach((x, ord) => keys.run('L2-aaaaaaaaaaaaaaaaaaaa', ord, x.key, x.mode, x.limit));
  event.run(3, 3000, 'acquired', 'two', 2, json(two), null, null, 'L2-aaaaaaaaaaaaaaaaaaaa');
  lease.run('L3-aaaaaaaaaaaaaaaaaaaa', 'three', 3, 3500, soon, json([r('d')]), json({}));
  keys.run('L3-aaaaaaaaaaaaaaaaaaaa', 0, 'd', 'exclusive', null);
  db.close();
}

describe('sqlite store: one row per lease', () => {
  it('migrates a file of the previous layout: live leases, their keys, the fence counter and the history', async () => {
    const path = join(tmp.dir, 'v2.db');
    versionTwoFile(path);
    const store = createSqliteStore(path);
    try {
      const { locks } = await store.list();
      assert.deepEqual(locks.map((l) => [l.key, l.owner, l.fence]), [['b', 'two', 2], ['c', 'two', 2], ['d', 'three', 3]]);
      assert.deepEqual((await store.get('L2-aaaaaaaaaaaaaaaaaaaa'))?.metadata, { job: 2 });
      // The second resource of L2 still blocks (its key row came along).
      const busy = await store.acquire(request({ owner: 'x', resources: ['c'] }), once);
      assert.equal(busy.status, 'busy');
      assert.equal((await store.renew('L1-aaaaaaaaaaaaaaaaaaaa', 1000)).status, 'lost', 'an ended lease whose events are kept is remembered');
      // History: L3's acquired event got a new id (6); L0's lone end event went.
      const events = await store.history({ limit: 100 });
      assert.deepEqual(events.map((e) => [e.id, e.type, e.owner]), [[6, 'acquired', 'three'], [3, 'acquired', 'two'], [2, 'released', 'one'], [1, 'acquired', 'one']]);
      assert.equal(events[2]?.reason, 'release');
      assert.equal(events[3]?.at, new Date(1000).toISOString());
      // The counters go on from where they were.
      const granted = await store.acquire(request({ owner: 'x', resources: ['e'] }), once);
      assert.equal(granted.status === 'granted' && granted.lease.fence, 5);
      assert.equal(await store.release('L2-aaaaaaaaaaaaaaaaaaaa'), true);
      const newest = await store.history({ limit: 2 });
      assert.deepEqual(newest.map((e) => [e.id, e.type, e.fence]), [[8, 'released', 2], [7, 'acquired', 5]]);
      assert.equal((await store.acquire(request({ owner: 'x', resources: ['c'] }), once)).status, 'granted', 'the key rows end with the lease');
    } finally {
      await store.close();
    }
  });

  it('writes one row per lease: its acquire and its end are that row, no other rows stay', async () => {
    const path = join(tmp.dir, 'rows.db');
    const store = createSqliteStore(path, { synchronous: 'NORMAL' });
    try {
      for (let i = 0; i < 10; i++) {
        const out = await store.acquire(request({ owner: 'r', resources: i % 2 === 0 ? ['k'] : ['k', 'k2/x'] }), once);
        assert.equal(out.status, 'granted');
        if (out.status === 'granted') await store.release(out.lease.id);
      }
    } finally {
      await store.close();
    }
    const db = new Database(path, { readonly: true });
    try {
      const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
      assert.equal(count('holdfast_leases'), 10);
      assert.equal(count('holdfast_lease_keys'), 0, 'key rows only while a lease with several resources is live');
      const tables = (db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'holdfast_%' ORDER BY name`).all() as { name: string }[]).map((t) => t.name);
      assert.deepEqual(tables, ['holdfast_delays', 'holdfast_lease_keys', 'holdfast_leases', 'holdfast_meta', 'holdfast_migrations', 'holdfast_waiter_resources', 'holdfast_waiters']);
    } finally {
      db.close();
    }
  });
});

describe('sqlite store: counters read from the rows', () => {
  it('fences go on one by one after the trim removed the rows of leases that ended', async () => {
    const store = createSqliteStore(join(tmp.dir, 'trim.db'), { synchronous: 'NORMAL', historyLimit: 1000 });
    try {
      const held: string[] = [];
      for (let i = 0; i < 1100; i++) {
        const out = await store.acquire(request({ owner: 't', resources: [`k${i}`] }), once);
        assert.ok(out.status === 'granted' && out.lease.fence === i + 1);
        held.push(out.lease.id);
      }
      // The newest lease ends first, so 1,099 end events after its own make its row old enough to trim.
      for (const id of held.reverse()) assert.equal(await store.release(id), true);
      const kept = new Set((await store.history({ limit: 5000 })).map((e) => e.id));
      assert.ok(!kept.has(1099) && !kept.has(1102), 'the trim removed the rows of leases that ended early');
      assert.ok(kept.has(1100) && kept.has(1101), 'but not the newest lease row');
      const next = await store.acquire(request({ owner: 't', resources: ['after'] }), once);
      assert.equal(next.status === 'granted' && next.lease.fence, 1101, 'the fence follows the newest, never repeats');
      const newest = await store.history({ limit: 1 });
      assert.equal(newest[0]?.id, 2201, 'history ids go on one by one');
    } finally {
      await store.close();
    }
  });

  it('refuses the counter writes of an older holdfast on the same file', async () => {
    const path = join(tmp.dir, 'older.db');
    await createSqliteStore(path).close();
    const db = new Database(path);
    try {
      for (const column of ['fence', 'history_id']) {
        assert.throws(() => db.prepare(`UPDATE holdfast_meta SET ${column} = ${column} + 1 WHERE id = 1 RETURNING ${column}`).get(), /layout 4/);
      }
      assert.doesNotThrow(() => db.prepare('UPDATE holdfast_meta SET seq = seq + 1 WHERE id = 1').run(), 'the queue sequence is still a counter');
    } finally {
      db.close();
    }
  });
});
