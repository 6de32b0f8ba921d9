/**
 * Fenced writes to a SQLite resource (better-sqlite3): in one IMMEDIATE transaction, raise the
 * resource's fence row unless it is newer, then run `write`.
 */
import { checkFencedOptions, type FencedResult, type FencedWriteOptions } from './result.js';

/** The part of a better-sqlite3 `Database` this needs. */
export interface SqliteDatabaseLike {
  prepare(sql: string): { run(...params: unknown[]): unknown; get(...params: unknown[]): unknown };
  transaction<R>(fn: () => R): { immediate(): R };
  exec(sql: string): unknown;
}

const quote = (parts: string[]): string => parts.map((p) => `"${p}"`).join('.');

export function ensureSqliteFenceTable(db: SqliteDatabaseLike, table?: string): void {
  const name = quote(checkFencedOptions({ resource: 'x', fence: 1, table }));
  db.exec(`CREATE TABLE IF NOT EXISTS ${name} (resource TEXT PRIMARY KEY, fence INTEGER NOT NULL)`);
}

export function fencedWriteSqlite<T>(db: SqliteDatabaseLike, options: FencedWriteOptions, write: () => T): FencedResult<T> {
  const name = quote(checkFencedOptions(options));
  const run = db.transaction((): FencedResult<T> => {
    const row = db.prepare(`SELECT fence FROM ${name} WHERE resource = ?`).get(options.resource) as { fence: number } | undefined;
    if (row && row.fence > options.fence) return { accepted: false, highestFence: row.fence };
    db.prepare(`INSERT INTO ${name} (resource, fence) VALUES (?, ?) ON CONFLICT (resource) DO UPDATE SET fence = excluded.fence`).run(
      options.resource,
      options.fence,
    );
    return { accepted: true, value: write(), fence: options.fence };
  });
  return run.immediate();
}
