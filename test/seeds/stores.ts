/**
 * The stores every seed example runs against: `memory:`, `sqlite:` on a fresh temporary file and
 * `postgres://` in a fresh schema (one per test file, removed afterwards). None is skipped: a
 * store that can't be opened fails the test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import pg from 'pg';

export interface SeedStore {
  name: 'memory' | 'sqlite' | 'postgres';
  url: string;
}

const POSTGRES_URL = process.env['HOLDFAST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export function seedStores(label: string): SeedStore[] {
  const dir = mkdtempSync(join(tmpdir(), `holdfast-seed-${label}-`));
  const schema = `hf_seed_${label.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
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
  return [
    { name: 'memory', url: 'memory:' },
    { name: 'sqlite', url: `sqlite:${join(dir, 'holdfast.db')}` },
    { name: 'postgres', url: postgres.toString() },
  ];
}
