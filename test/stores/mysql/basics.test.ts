/**
 * The mysql store beyond the conformance suite: migrations (several processes opening a new
 * database at once, `migrate: false`, the script), options and URLs, the store clock (a client's
 * `SET timestamp` or session time zone cannot move it), fences across the one-round-trip and the
 * full paths, and concurrent multi-key requests over several roots (locks taken in sorted order,
 * so no deadlock reaches the caller and no two holders ever overlap).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';
import { HoldfastError, openLocks, openStore, type Locks } from '../../../src/index.js';
import { createMysqlStore, mysqlMigrationScript, type MysqlStore } from '../../../src/stores/mysql/store.js';
import * as sql from '../../../src/stores/mysql/sql.js';
import { LATEST_VERSION } from '../../../src/stores/mysql/migrate.js';
import { createMysqlDatabase, mysqlAdmin, MYSQL_URL, request, sleep, type TestDatabase } from './helpers.js';

/** Pipes `script` into the `mysql` command-line client connected to the database of `url`. */
async function applyWithMysqlClient(url: string, script: string): Promise<void> {
  const parsed = new URL(url.replace(/^mariadb:/i, 'mysql:'));
  const args = ['--host', parsed.hostname, '--port', parsed.port || '3306', '--user', decodeURIComponent(parsed.username)];
  if (parsed.password) args.push(`--password=${decodeURIComponent(parsed.password)}`);
  args.push(decodeURIComponent(parsed.pathname.slice(1)));
  const child = spawn('mysql', args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(script);
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, `mysql < script failed: ${stderr}`);
}

const isCode = (code: string) => (error: unknown): boolean => {
  assert.ok(error instanceof HoldfastError, `expected ${code}, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return true;
};

describe('mysql store: migrations', () => {
  const databases: TestDatabase[] = [];
  after(async () => {
    await Promise.allSettled(databases.map((d) => d.drop()));
  });

  test('four stores opening a new database at once apply each migration once', async () => {
    const db = await createMysqlDatabase(MYSQL_URL, 'hf_test');
    databases.push(db);
    const stores = Array.from({ length: 4 }, () => createMysqlStore(db.url, { poolSize: 2 }));
    try {
      await Promise.all(stores.map((s) => s.ready()));
      const rows = (await mysqlAdmin(db.url, 'SELECT version FROM hf_migrations ORDER BY version')) as Array<{ version: number }>;
      assert.deepEqual(rows.map((r) => r.version), Array.from({ length: LATEST_VERSION }, (_, i) => i + 1));
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('with migrate: false an unmigrated database is refused; after the script it works', async () => {
    const db = await createMysqlDatabase(MYSQL_URL, 'hf_test');
    databases.push(db);
    const unmigrated = createMysqlStore(db.url, { migrate: false, poolSize: 1 });
    try {
      await assert.rejects(unmigrated.acquire(request({ key: 'm/k' }), { waitMs: 0, waiterTtlMs: 3000 }), (error: unknown) => {
        isCode('STORE_UNAVAILABLE')(error);
        assert.match((error as Error).message, /migrations/);
        return true;
      });
    } finally {
      await unmigrated.close();
    }
    // Applied the way the docs say: `mysql DB < holdfast.sql` (the procedures need its DELIMITER lines).
    await applyWithMysqlClient(db.url, mysqlMigrationScript());
    const store = createMysqlStore(db.url, { migrate: false, poolSize: 1 });
    try {
      const outcome = await store.acquire(request({ key: 'm/k' }), { waitMs: 0, waiterTtlMs: 3000 });
      assert.equal(outcome.status, 'granted');
    } finally {
      await store.close();
    }
  });
});

describe('mysql store: options and URLs', () => {
  test('bad options and URLs name the field and open nothing', async () => {
    assert.throws(() => createMysqlStore(MYSQL_URL, { poolSize: 0 }), /options\.poolSize.*1\.\.1000/);
    assert.throws(() => createMysqlStore(MYSQL_URL, { watchIntervalMs: 5000 }), /options\.watchIntervalMs/);
    assert.throws(() => createMysqlStore(MYSQL_URL, { nope: 1 } as never), /options\.nope/);
    assert.throws(() => createMysqlStore('postgres://x/y'), /url/);
    assert.throws(() => createMysqlStore('mysql://root@127.0.0.1:3306'), /database name/);
  });

  test('mariadb:// opens the same store', async () => {
    const store = await openStore(MYSQL_URL.replace(/^mysql:/, 'mariadb:'), { poolSize: 1 });
    try {
      assert.equal(store.info.kind, 'mysql');
      assert.equal(store.info.durable, true);
      assert.equal(store.info.wakeups, 'complete');
    } finally {
      await store.close();
    }
  });
});

describe('mysql store: clock, fences, concurrency', () => {
  let db: TestDatabase;
  const opened: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    db = await createMysqlDatabase(MYSQL_URL, 'hf_test');
  });
  after(async () => {
    await Promise.allSettled(opened.map((o) => o.close()));
    await db?.drop();
  });
  const store = async (): Promise<MysqlStore> => {
    const s = createMysqlStore(db.url, { poolSize: 4 });
    opened.push(s);
    await s.ready();
    return s;
  };

  test('the store clock ignores a session’s SET timestamp and time zone', async () => {
    const s = await store();
    const connection = await mysql.createConnection({ uri: db.url, multipleStatements: true });
    try {
      const [results] = await connection.query(`SET time_zone = '+05:00', timestamp = 1000000; ${sql.SESSION}; ${sql.NOW}`);
      const now = Number((results as Array<Array<{ now: number }>>)[2]![0]!.now);
      assert.ok(Math.abs(now - Date.now()) < 5000, `store time ${new Date(now).toISOString()}`);
    } finally {
      await connection.end();
    }
    const before = Date.now();
    const outcome = await s.acquire(request({ key: 'clock/k' }), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(outcome.status, 'granted');
    if (outcome.status === 'granted') assert.ok(Math.abs(outcome.lease.acquiredAt - before) < 5000);
  });

  test('fences strictly increase across the one-round-trip and the full paths', async () => {
    const s = await store();
    const fences: number[] = [];
    for (let i = 0; i < 20; i++) {
      // Alternating: free keys (one round trip), a requestId (the full path), a queued hand-off.
      const lease = await s.acquire(request({ key: `f/${i % 3}`, requestId: i % 2 === 0 ? null : `r${i}` }), { waitMs: 0, waiterTtlMs: 3000 });
      assert.equal(lease.status, 'granted');
      if (lease.status !== 'granted') return;
      fences.push(lease.lease.fence);
      const waiter = request({ key: `f/${i % 3}` });
      const queued = await s.acquire(waiter, { waitMs: 5000, waiterTtlMs: 3000 });
      assert.equal(queued.status, 'queued');
      assert.equal(await s.release(lease.lease.id), true);
      const granted = await s.poll(waiter.id);
      assert.equal(granted.status, 'granted');
      if (granted.status === 'granted') {
        fences.push(granted.lease.fence);
        assert.ok(granted.lease.acquiredAt >= lease.lease.acquiredAt);
        assert.equal(await s.release(waiter.id), true);
      }
    }
    assert.deepEqual([...fences].sort((a, b) => a - b), fences);
    assert.equal(new Set(fences).size, fences.length);
    const events = (await s.history({ limit: 1000 })).filter((e) => e.resources[0]!.key.startsWith('f/'));
    assert.equal(events.filter((e) => e.type === 'acquired').length, fences.length);
    assert.equal(events.filter((e) => e.type === 'released').length, fences.length);
  });

  test('the one-key procedures decide like the full path: related keys are busy, near misses are granted', async () => {
    const s = await store();
    const once = { waitMs: 0, waiterTtlMs: 3000 };
    const status = async (key: string): Promise<string> => {
      const outcome = await s.acquire(request({ key, owner: `probe-${key}` }), once);
      if (outcome.status === 'granted') assert.equal(await s.release(outcome.lease.id), true);
      return outcome.status;
    };
    const held = await s.acquire(request({ key: 'p/a/b' }), once);
    assert.equal(held.status, 'granted');
    for (const key of ['p', 'p/a', 'p/a/b', 'p/a/b/c']) assert.equal(await status(key), 'busy', key);
    for (const key of ['p/a/bc', 'p/a/b0', 'p/a/c', 'p/ab', 'pa']) assert.equal(await status(key), 'granted', key);
    // A lock-delay left by a forced release, and a queued waiter, are in the way like a holder.
    const delayed = await s.acquire(request({ key: 'q/x/y', lockDelayMs: 5000 }), once);
    assert.equal(delayed.status, 'granted');
    assert.equal(await s.forceRelease('q/x/y', { by: 'test' }), 1);
    for (const key of ['q/x', 'q/x/y', 'q/x/y/z']) assert.equal(await status(key), 'busy', key);
    assert.equal(await status('q/xy'), 'granted');
    const holder = await s.acquire(request({ key: 'w/a/b' }), once);
    const waiter = request({ key: 'w/a', owner: 'waiter' });
    assert.equal((await s.acquire(waiter, { waitMs: 10_000, waiterTtlMs: 10_000 })).status, 'queued');
    // Only the queued waiter is in the way of w/a/c (first come, first served); w/b is free.
    assert.equal(await status('w/a/c'), 'busy');
    assert.equal(await status('w/b'), 'granted');
    // The release hands w/a to the waiter (the procedure sees the related waiter and leaves it to the full path).
    if (holder.status === 'granted') assert.equal(await s.release(holder.lease.id), true);
    const polled = await s.poll(waiter.id);
    assert.equal(polled.status, 'granted');
    assert.equal(await status('w/a/b'), 'busy');
    if (held.status === 'granted') assert.equal(await s.release(held.lease.id), true);
    assert.equal(await status('p/a'), 'granted');
  });

  test('concurrent multi-key requests over several roots never overlap and never fail', async () => {
    const objects: Locks[] = [];
    for (let i = 0; i < 3; i++) {
      const locks = await openLocks(db.url, { owner: `o${i}`, waiterTtlMs: 5000, storeOptions: { poolSize: 4 } });
      opened.push(locks);
      objects.push(locks);
    }
    const keys = ['a/1', 'a/2', 'b/1', 'b/2', 'c', 'd/1/x'];
    const holding = new Map<string, number>();
    let overlaps = 0;
    let grants = 0;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; i < 8; i++) {
        const picked = [...new Set([keys[(w + i) % keys.length]!, keys[(w * 3 + i * 5 + 1) % keys.length]!])].reverse();
        const lease = await objects[w % objects.length]!.acquire(picked.map((key) => ({ key })), { waitMs: 30_000, ttlMs: 10_000 });
        for (const key of picked) {
          if (holding.has(key)) overlaps++;
          holding.set(key, lease.fence);
        }
        grants++;
        await sleep(1);
        for (const key of picked) holding.delete(key);
        await lease.release();
      }
    };
    await Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
    assert.equal(overlaps, 0);
    assert.equal(grants, 96);
  });
});
