/**
 * Fenced writes on a MySQL resource (src/fencing/mysql.ts) with this store's fences, in the same
 * database (seed 004's GC-pause story): holder 1 pauses past its lease, holder 2 is granted with a
 * higher fence and writes, holder 1 wakes and its write is refused and runs nothing; the row keeps
 * holder 2's value. Then a race of several holders in turn: every write with a current fence is
 * accepted, every stale one refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mysql, { type Pool, type RowDataPacket } from 'mysql2/promise';
import { ensureMysqlFenceTable, fencedWriteMysql, openLocks, type Locks } from '../../../src/index.js';
import { createMysqlDatabase, MYSQL_URL, sleep, type TestDatabase } from './helpers.js';

describe('mysql store: fenced writes on MySQL resources', () => {
  let db: TestDatabase;
  let pool: Pool;
  const opened: Locks[] = [];
  before(async () => {
    db = await createMysqlDatabase(MYSQL_URL, 'hf_test');
    pool = mysql.createPool({ uri: db.url, connectionLimit: 4 });
    await ensureMysqlFenceTable(pool);
    await pool.query('CREATE TABLE docs (name VARCHAR(64) PRIMARY KEY, body TEXT NOT NULL) ENGINE=InnoDB');
  });
  after(async () => {
    await Promise.allSettled(opened.map((l) => l.close()));
    await pool?.end();
    await db?.drop();
  });
  const locks = async (owner: string): Promise<Locks> => {
    const l = await openLocks(db.url, { owner, storeOptions: { poolSize: 2 } });
    opened.push(l);
    return l;
  };
  const write = (fence: number, body: string) =>
    fencedWriteMysql(pool, { resource: 'docs/config', fence }, async (connection) => {
      await connection.query('INSERT INTO docs (name, body) VALUES (?, ?) ON DUPLICATE KEY UPDATE body = VALUES(body)', ['config', body]);
      return body;
    });
  const body = async (): Promise<string | undefined> => {
    const [rows] = await pool.query<RowDataPacket[]>(`SELECT body FROM docs WHERE name = 'config'`);
    return rows[0]?.['body'] as string | undefined;
  };

  test('a holder that paused past its lease is refused after the next holder wrote', async () => {
    const [one, two] = [await locks('holder-1'), await locks('holder-2')];
    const first = await one.acquire('docs/config', { ttlMs: 300, autoRenew: false });
    assert.deepEqual(await write(first.fence, 'one'), { accepted: true, value: 'one', fence: first.fence });
    await sleep(400); // the "GC pause": the lease expires by the database clock
    const second = await two.acquire('docs/config', { waitMs: 5000 });
    assert.ok(second.fence > first.fence);
    assert.deepEqual(await write(second.fence, 'two'), { accepted: true, value: 'two', fence: second.fence });
    assert.deepEqual(await write(first.fence, 'one, late'), { accepted: false, highestFence: second.fence });
    assert.equal(await body(), 'two');
    await second.release();
  });

  test('holders in turn: current fences are accepted, stale ones refused', async () => {
    const l = await locks('turns');
    const fences: number[] = [];
    for (let i = 0; i < 5; i++) {
      const lease = await l.acquire('docs/config', { waitMs: 5000 });
      fences.push(lease.fence);
      assert.equal((await write(lease.fence, `turn ${i}`)).accepted, true);
      await lease.release();
    }
    for (const stale of fences.slice(0, -1)) assert.equal((await write(stale, 'stale')).accepted, false);
    assert.equal(await body(), 'turn 4');
  });
});
