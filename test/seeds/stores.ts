/**
 * The stores every seed example runs against: `memory:` and `sqlite:` on a fresh temporary file
 * (one per test file, removed afterwards). The sqlite case is not skipped when `openLocks` does
 * not know `sqlite:`: the example then fails with INVALID_REQUEST "unknown store", as it should.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export interface SeedStore {
  name: 'memory' | 'sqlite';
  url: string;
}

export function seedStores(label: string): SeedStore[] {
  const dir = mkdtempSync(join(tmpdir(), `holdfast-seed-${label}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return [
    { name: 'memory', url: 'memory:' },
    { name: 'sqlite', url: `sqlite:${join(dir, 'holdfast.db')}` },
  ];
}
