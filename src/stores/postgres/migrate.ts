/**
 * Applies the store's migrations (migrations.generated.ts, compiled from migrations/*.sql) to a
 * schema. All pending migrations run in one transaction under a transaction-level advisory lock
 * keyed by the schema name, so processes that start at once apply each migration exactly once
 * (the others wait, then find nothing to do), and the lock is released even if a process dies.
 * Applied versions are recorded in the schema's `migrations` table. Nothing here is session
 * state, so it works behind a transaction-pooling proxy.
 *
 * The migration SQL never names the schema: the runner sets `search_path` (transaction-local,
 * a parameter) and every function is created with `SET search_path FROM CURRENT`.
 */
import pg from 'pg';
import { MIGRATIONS } from './migrations.generated.js';
import { inTransaction } from './transaction.js';

/** The search_path the store's objects are created and run with. */
export function searchPath(schema: string): string {
  return `${pg.escapeIdentifier(schema)}, pg_catalog, pg_temp`;
}

export const LATEST_VERSION = MIGRATIONS.length === 0 ? 0 : MIGRATIONS[MIGRATIONS.length - 1]!.version;

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/** Creates the schema if needed and applies the migrations above its recorded version. Returns the versions applied. */
export async function migrate(pool: pg.Pool, schema: string): Promise<number[]> {
  return inTransaction(pool, async (client) => ({ value: await migrateIn(client, schema) }));
}

async function migrateIn(client: Queryable, schema: string): Promise<number[]> {
  // hashtext of a constant and of the schema: one lock per schema, in the two-key space (apart
  // from the store's own one-key advisory locks).
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('holdfast.migrate'), hashtext($1))`, [schema]);
  // DDL takes no parameters: the schema name goes in quoted by escapeIdentifier.
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
  await client.query(`SELECT set_config('search_path', $1, true)`, [searchPath(schema)]);
  await client.query(MIGRATIONS_TABLE);
  const { rows } = await client.query('SELECT coalesce(max(version), 0) AS version FROM migrations');
  const current = Number(rows[0]?.['version'] ?? 0);
  await checkBaseline(client, schema);
  if (current > LATEST_VERSION) {
    throw new Error(`schema ${JSON.stringify(schema)} is at migration ${current}, newer than this holdfast (${LATEST_VERSION}); upgrade holdfast`);
  }
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    await client.query(migration.sql);
    await client.query('INSERT INTO migrations (version, name, checksum) VALUES ($1, $2, $3)', [
      migration.version, migration.name, migration.checksum,
    ]);
    applied.push(migration.version);
  }
  return applied;
}

/**
 * Refuses a schema whose migration 1 is not this baseline: one made by a development build from
 * before the 0.1.0 baseline (migrations 1-12 then, `001_tables` first). The package was
 * unreleased, so there is no upgrade path; such a schema is dropped and created anew.
 */
async function checkBaseline(client: Queryable, schema: string): Promise<void> {
  const baseline = MIGRATIONS[0];
  if (baseline === undefined) return;
  const { rows } = await client.query(`SELECT name, checksum FROM ${pg.escapeIdentifier(schema)}.migrations WHERE version = 1`);
  const row = rows[0];
  if (row === undefined || row['checksum'] === baseline.checksum) return;
  throw new Error(
    `schema ${JSON.stringify(schema)} was made by a development build of holdfast (its migration 1 is ${JSON.stringify(row['name'])}, ` +
      `not this ${JSON.stringify(baseline.name)}); there is no upgrade path from it: drop the schema and open it again`,
  );
}

/** Checks that a schema migrated by someone else is at this holdfast's version. */
export async function checkVersion(pool: Queryable, schema: string): Promise<void> {
  const { rows } = await pool.query(
    `SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE 1 END AS present`,
    [`${pg.escapeIdentifier(schema)}.migrations`],
  );
  if (rows[0]?.['present'] == null) {
    throw new Error(`schema ${JSON.stringify(schema)} has no holdfast migrations table: apply migrationScript() or open with migrate: true`);
  }
  const version = await pool.query(`SELECT coalesce(max(version), 0) AS version FROM ${pg.escapeIdentifier(schema)}.migrations`);
  const current = Number(version.rows[0]?.['version'] ?? 0);
  await checkBaseline(pool, schema);
  if (current !== LATEST_VERSION) {
    throw new Error(`schema ${JSON.stringify(schema)} is at migration ${current}, this holdfast needs ${LATEST_VERSION}`);
  }
}

/**
 * The whole migration as one SQL script, for teams that apply migrations themselves (with
 * `migrate: false`): `psql -v ON_ERROR_STOP=1 -1 -f holdfast.sql`. It applies every migration
 * after version `since` (0: a new schema; to upgrade, the schema's `max(version)` from its
 * `migrations` table), and fails (in one transaction, so changing nothing) when the schema
 * already has one of them.
 */
export function migrationScript(schema = 'holdfast', since = 0): string {
  const ident = pg.escapeIdentifier(schema);
  const literal = pg.escapeLiteral(searchPath(schema));
  const lines = [
    '-- holdfast PostgreSQL store: schema migrations. Run in one transaction.',
    `SELECT pg_advisory_xact_lock(hashtext('holdfast.migrate'), hashtext(${pg.escapeLiteral(schema)}));`,
    `CREATE SCHEMA IF NOT EXISTS ${ident};`,
    `SELECT set_config('search_path', ${literal}, true);`,
    `${MIGRATIONS_TABLE};`,
  ];
  for (const m of MIGRATIONS) {
    if (m.version <= since) continue;
    lines.push(
      `-- migration ${m.version}: ${m.name}`,
      `DO $holdfast$ BEGIN IF EXISTS (SELECT 1 FROM migrations WHERE version = ${m.version}) THEN RAISE EXCEPTION 'holdfast migration ${m.version} is already applied: apply only the newer ones'; END IF; END $holdfast$;`,
      m.sql,
      `INSERT INTO migrations (version, name, checksum) VALUES (${m.version}, ${pg.escapeLiteral(m.name)}, ${pg.escapeLiteral(m.checksum)});`,
    );
  }
  return lines.join('\n') + '\n';
}
