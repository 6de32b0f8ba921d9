/**
 * The benchmark target of the `mysql://` store: a fresh database `hf_bench_<random>` on
 * `HOLDFAST_MYSQL_URL` (default mysql://root@127.0.0.1:3306/test), dropped afterwards; every
 * `Locks` object gets its own store object (its own pool and change-log watcher: another
 * "process"). Also the MySQL anchors of the `mysql` suite: a naive row lease and GET_LOCK.
 */
import { randomBytes } from 'node:crypto';
import mysql, { type Pool, type ResultSetHeader, type RowDataPacket } from 'mysql2/promise';
import { openStore, type Locks, type LockStore } from '../src/index.js';
import type { CallCounter } from './counting.js';
import { SkipError, type StoreKind } from './harness.js';
import type { OpenOptions, Target } from './stores.js';

export const MYSQL_URL = process.env['HOLDFAST_MYSQL_URL'] || 'mysql://root@127.0.0.1:3306/test';

/** A fresh database on the server; throws SkipError when the server can't be reached. */
export async function mysqlDatabase(prefix: string): Promise<{ url: string; version: string; drop(): Promise<void> }> {
  let connection: mysql.Connection;
  try {
    connection = await mysql.createConnection({ uri: MYSQL_URL, connectTimeout: 3000 });
  } catch (error) {
    throw new SkipError(`MySQL at ${MYSQL_URL} is not reachable: ${error instanceof Error ? error.message : String(error)}`);
  }
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const [rows] = await connection.query<RowDataPacket[]>('SELECT VERSION() AS v');
  await connection.query(`CREATE DATABASE \`${name}\``);
  await connection.end();
  const url = new URL(MYSQL_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    version: String(rows[0]?.['v']),
    drop: async () => {
      const c = await mysql.createConnection({ uri: MYSQL_URL });
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c.end();
    },
  };
}

type Track = (store: LockStore, open: OpenOptions, onClose?: () => Promise<void>) => Promise<Locks>;

export async function openMysqlTarget(
  track: Track, closeAll: () => Promise<void>, base: { kind: StoreKind; calls: CallCounter; takeDown(): void }, poolSize: number,
): Promise<Target> {
  const database = await mysqlDatabase('hf_bench');
  const storeOptions = { poolSize };
  try {
    await (await openStore(database.url, storeOptions)).close(); // migrates once
  } catch (error) {
    await database.drop().catch(() => {});
    throw error;
  }
  return {
    ...base, sql: null,
    open: async (o = {}) => track(await openStore(database.url, storeOptions), o),
    close: async () => {
      await closeAll();
      await database.drop();
    },
  };
}

/**
 * The naive MySQL lease a team writes first: one row per key, taken by
 * `INSERT ... ON DUPLICATE KEY UPDATE` that overwrites the row only if it expired (by the
 * database clock), released with a `DELETE` of the owner's row. Autocommitted statements, InnoDB,
 * the same durability as holdfast's rows (no queue, no fences, no history).
 */
export class NaiveMysqlLease {
  private constructor(readonly pool: Pool) {}

  static async open(url: string, poolSize: number): Promise<NaiveMysqlLease> {
    const pool = mysql.createPool({ uri: url, connectionLimit: poolSize });
    await pool.query(`CREATE TABLE IF NOT EXISTS naive_leases (k VARBINARY(512) PRIMARY KEY, owner VARBINARY(64) NOT NULL,
      expires_at BIGINT NOT NULL) ENGINE=InnoDB`);
    return new NaiveMysqlLease(pool);
  }

  /** The owner token, or null when busy. */
  async tryAcquire(key: string, ttlMs: number): Promise<string | null> {
    const owner = randomBytes(12).toString('base64url');
    const now = 'CAST(ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000) AS SIGNED)';
    const [result] = await this.pool.query<ResultSetHeader>(
      `INSERT INTO naive_leases (k, owner, expires_at) VALUES (?, ?, ${now} + ?)
       ON DUPLICATE KEY UPDATE owner = IF(expires_at <= ${now}, VALUES(owner), owner),
         expires_at = IF(expires_at <= ${now}, VALUES(expires_at), expires_at)`,
      [key, owner, ttlMs],
    );
    // 1: inserted, 2: overwritten an expired row, 0: busy (nothing changed).
    return result.affectedRows > 0 ? owner : null;
  }

  async release(key: string, owner: string): Promise<void> {
    await this.pool.query('DELETE FROM naive_leases WHERE k = ? AND owner = ?', [key, owner]);
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

/** `GET_LOCK(key, 0)` / `RELEASE_LOCK(key)` on one pooled session per pair: not durable (session locks), a floor. */
export class GetLock {
  readonly #pool: Pool;
  constructor(url: string, poolSize: number) {
    this.#pool = mysql.createPool({ uri: url, connectionLimit: poolSize });
  }

  async pair(key: string): Promise<boolean> {
    const connection = await this.#pool.getConnection();
    try {
      const [rows] = await connection.query<RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS ok', [key]);
      if (Number(rows[0]?.['ok']) !== 1) return false;
      await connection.query('SELECT RELEASE_LOCK(?)', [key]);
      return true;
    } finally {
      connection.release();
    }
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}
