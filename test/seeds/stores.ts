/**
 * The stores every seed example runs against: `memory:`, `sqlite:` on a fresh temporary file,
 * `postgres://` in a fresh schema and `mysql://` in a fresh database (one per test file, removed
 * afterwards). None is skipped: a
 * store that can't be opened fails the test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import { mysqlAdmin, MYSQL_URL } from '../stores/mysql/helpers.js';

export interface SeedStore {
  name: 'memory' | 'sqlite' | 'postgres' | 'mysql';
  url: string;
}

const POSTGRES_URL = process.env['HOLDFAST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export function seedStores(label: string): SeedStore[] {
  const dir = mkdtempSync(join(tmpdir(), `holdfast-seed-${label}-`));
  const schema = `hf_seed_${label.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  const database = `hf_seed_${label.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  before(() => mysqlAdmin(MYSQL_URL, `CREATE DATABASE \`${database}\``));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await mysqlAdmin(MYSQL_URL, `DROP DATABASE IF EXISTS \`${database}\``);
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${client.escapeIdentifier(schema)} CASCADE`);
    } finally {
      await client.end();
    }
  });
  const postgres = new URL(POSTGRES_URL);
  postgres.searchParams.set('schema', schema);
  const mysqlUrl = new URL(MYSQL_URL);
  mysqlUrl.pathname = `/${database}`;
  return [
    { name: 'memory', url: 'memory:' },
    { name: 'sqlite', url: `sqlite:${join(dir, 'holdfast.db')}` },
    { name: 'postgres', url: postgres.toString() },
    { name: 'mysql', url: mysqlUrl.toString() },
  ];
}
