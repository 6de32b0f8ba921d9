/**
 * The fenced-write helpers against real databases: an older fence is refused and changes nothing,
 * an equal or newer one is accepted, and concurrent writers with interleaved fences leave the
 * register at the highest fence.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  ensureMysqlFenceTable, ensurePostgresFenceTable, ensureSqliteFenceTable, fencedSetRedis, fencedWriteMysql,
  fencedWritePostgres, fencedWriteSqlite, InvalidRequestError,
} from '../../src/index.js';

const suffix = randomBytes(4).toString('hex');

describe('fenced writes: PostgreSQL', () => {
  const pool = new pg.Pool({ connectionString: process.env['HOLDFAST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test', max: 8 });
  const table = `hf_fences_${suffix}`;
  const data = `hf_data_${suffix}`;
  after(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}, ${data}`);
    await pool.end();
  });

  test('refuses an older fence and runs nothing; accepts equal and newer', async () => {
    await ensurePostgresFenceTable(pool, table);
    await pool.query(`CREATE TABLE ${data} (id text PRIMARY KEY, value text)`);
    const put = (fence: number, value: string) =>
      fencedWritePostgres(pool, { resource: 'doc', fence, table }, async (client) => {
        await client.query(`INSERT INTO ${data} (id, value) VALUES ('doc', $1) ON CONFLICT (id) DO UPDATE SET value = $1`, [value]);
        return value;
      });
    assert.deepEqual(await put(5, 'five'), { accepted: true, value: 'five', fence: 5 });
    assert.deepEqual(await put(7, 'seven'), { accepted: true, value: 'seven', fence: 7 });
    assert.deepEqual(await put(6, 'six'), { accepted: false, highestFence: 7 });
    assert.deepEqual(await put(7, 'seven again'), { accepted: true, value: 'seven again', fence: 7 });
    const { rows } = await pool.query(`SELECT value FROM ${data} WHERE id = 'doc'`);
    assert.equal(rows[0].value, 'seven again');
  });

  test('a failing write rolls the fence back', async () => {
    await assert.rejects(
      fencedWritePostgres(pool, { resource: 'rollback', fence: 9, table }, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    const { rows } = await pool.query(`SELECT fence FROM ${table} WHERE resource = 'rollback'`);
    assert.equal(rows.length, 0);
  });

  test('concurrent writers end at the highest fence', async () => {
    const fences = Array.from({ length: 40 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    const results = await Promise.all(fences.map((fence) => fencedWritePostgres(pool, { resource: 'race', fence, table }, async () => fence)));
    assert.ok(results.some((r) => r.accepted));
    const { rows } = await pool.query(`SELECT fence FROM ${table} WHERE resource = 'race'`);
    assert.equal(Number(rows[0].fence), 40);
    // Every accepted write saw no newer fence before it: accepted fences rise in commit order.
    assert.ok(results.filter((r) => !r.accepted).every((r) => !r.accepted && r.highestFence > 0));
  });

  test('bad options name the field', async () => {
    await assert.rejects(fencedWritePostgres(pool, { resource: 'x', fence: 0, table }, async () => 1), (e: unknown) => e instanceof InvalidRequestError && e.field === 'fence');
    await assert.rejects(fencedWritePostgres(pool, { resource: 'x', fence: 1, table: 'a;drop' }, async () => 1), (e: unknown) => e instanceof InvalidRequestError && e.field === 'table');
  });
});

describe('fenced writes: MySQL/MariaDB', () => {
  const pool = mysql.createPool({ uri: process.env['HOLDFAST_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/test', connectionLimit: 4 });
  const table = `hf_fences_${suffix}`;
  after(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  });

  test('refuses an older fence; accepts equal and newer', async () => {
    await ensureMysqlFenceTable(pool, table);
    const put = (fence: number) => fencedWriteMysql(pool, { resource: 'doc', fence, table }, async () => fence);
    assert.deepEqual(await put(3), { accepted: true, value: 3, fence: 3 });
    assert.deepEqual(await put(8), { accepted: true, value: 8, fence: 8 });
    assert.deepEqual(await put(4), { accepted: false, highestFence: 8 });
    assert.deepEqual(await put(8), { accepted: true, value: 8, fence: 8 });
  });
});

describe('fenced writes: Redis', () => {
  const redis = new Redis(process.env['HOLDFAST_REDIS_URL'] ?? 'redis://127.0.0.1:6379', { lazyConnect: true });
  const key = `hf:test:${suffix}`;
  after(async () => {
    await redis.del(key, `${key}:fence`);
    redis.disconnect();
  });

  test('refuses an older fence and keeps the newer value', async () => {
    await redis.connect();
    assert.deepEqual(await fencedSetRedis(redis, { key, fence: 2, value: 'two' }), { accepted: true, value: 'two', fence: 2 });
    assert.deepEqual(await fencedSetRedis(redis, { key, fence: 4, value: 'four' }), { accepted: true, value: 'four', fence: 4 });
    assert.deepEqual(await fencedSetRedis(redis, { key, fence: 3, value: 'three' }), { accepted: false, highestFence: 4 });
    assert.equal(await redis.get(key), 'four');
  });
});

describe('fenced writes: SQLite', () => {
  test('refuses an older fence and runs nothing', () => {
    const db = new Database(':memory:');
    try {
      ensureSqliteFenceTable(db);
      db.exec('CREATE TABLE doc (id INTEGER PRIMARY KEY, value TEXT)');
      const put = (fence: number, value: string) =>
        fencedWriteSqlite(db, { resource: 'doc', fence }, () => db.prepare('INSERT OR REPLACE INTO doc (id, value) VALUES (1, ?)').run(value).changes);
      assert.equal(put(10, 'ten').accepted, true);
      assert.deepEqual(put(9, 'nine'), { accepted: false, highestFence: 10 });
      assert.equal((db.prepare('SELECT value FROM doc WHERE id = 1').get() as { value: string }).value, 'ten');
    } finally {
      db.close();
    }
  });
});
