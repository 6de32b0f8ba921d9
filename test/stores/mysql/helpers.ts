/** Helpers of the mysql store tests: a database of their own on the shared server, a request. */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { validateRequest, type LockRequest, type RequestInput } from '../../../src/index.js';

export const DEFAULT_MYSQL_URL = 'mysql://root@127.0.0.1:3306/test';
export const MYSQL_URL = process.env['HOLDFAST_MYSQL_URL'] || DEFAULT_MYSQL_URL;

/** Runs one statement on the server of `url` (any database); returns its rows. */
export async function mysqlAdmin(url: string, statement: string, values: unknown[] = []): Promise<unknown> {
  const connection = await mysql.createConnection({ uri: url.replace(/^mariadb:/i, 'mysql:') });
  try {
    const [rows] = await connection.query(statement, values);
    return rows;
  } finally {
    await connection.end();
  }
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A new database `<prefix>_<random>` on the server of `url`. */
export async function createMysqlDatabase(url: string, prefix: string): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await mysqlAdmin(url, `CREATE DATABASE \`${name}\``);
  const parsed = new URL(url.replace(/^mariadb:/i, 'mysql:'));
  parsed.pathname = `/${name}`;
  return { url: parsed.toString(), name, drop: () => mysqlAdmin(url, `DROP DATABASE IF EXISTS \`${name}\``).then(() => {}) };
}

export function request(input: RequestInput & { key?: string }): LockRequest {
  const { key, ...rest } = input;
  return validateRequest({ owner: "test", ttlMs: 30_000, ...(key === undefined ? {} : { resources: [{ key }] }), ...rest }).request;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
