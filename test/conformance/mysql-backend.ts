/**
 * The conformance suite's `mysql://` backend: every test gets a new database `hf_conf_<random>`
 * on the server the URL names (created here, dropped afterwards), migrated once before the test
 * opens its objects. Objects get 4 pool connections each (several objects per test and four test
 * files at once stay well inside the server's `max_connections`).
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { openLocks, openStore, type Locks, type LocksOptions, type LockStore } from '../../src/index.js';

export const DEFAULT_MYSQL_URL = 'mysql://root@127.0.0.1:3306/test';

const MYSQL_POOL_SIZE = 4;

export interface MysqlBackend {
  rawStore(): Promise<LockStore>;
  openLocks(options: LocksOptions): Promise<Locks>;
  dispose(): Promise<void>;
}

/** Runs one statement on the server of `url` (any database). */
export async function mysqlAdmin(url: string, statement: string): Promise<void> {
  const connection = await mysql.createConnection({ uri: url.replace(/^mariadb:/i, 'mysql:') });
  try {
    await connection.query(statement);
  } finally {
    await connection.end();
  }
}

/** A new database on the server of `url`; returns its URL. */
export async function createMysqlDatabase(url: string, prefix: string): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await mysqlAdmin(url, `CREATE DATABASE \`${name}\``);
  const parsed = new URL(url.replace(/^mariadb:/i, 'mysql:'));
  parsed.pathname = `/${name}`;
  return { url: parsed.toString(), name, drop: () => mysqlAdmin(url, `DROP DATABASE IF EXISTS \`${name}\``) };
}

export async function mysqlBackend(url: string, wrap: (store: LockStore) => LockStore): Promise<MysqlBackend> {
  const database = await createMysqlDatabase(url, 'hf_conf');
  const storeOptions = { poolSize: MYSQL_POOL_SIZE };
  try {
    await (await openStore(database.url, storeOptions)).close();
  } catch (error) {
    await database.drop().catch(() => {});
    throw error;
  }
  return {
    rawStore: async () => wrap(await openStore(database.url, storeOptions)),
    openLocks: (options) => openLocks(database.url, { ...options, storeOptions: { ...storeOptions, ...options.storeOptions } }),
    dispose: () => database.drop(),
  };
}
