/**
 * Applies the store's migrations (migrations.generated.ts, compiled from migrations/*.sql) to
 * the database the URL names. MySQL commits DDL at once, so migrations can't share a
 * transaction; instead the runner holds `GET_LOCK('holdfast.migrate.<database>')` (released if
 * its connection dies), so processes that start at once apply each migration exactly once: the
 * others wait, then find it recorded in `hf_migrations`. A migration's statements are separated
 * by `;` at the end of a line, or by what a `DELIMITER` line sets (statementsOf).
 */
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import { MIGRATIONS } from './migrations.generated.js';

export const LATEST_VERSION = MIGRATIONS.length === 0 ? 0 : MIGRATIONS[MIGRATIONS.length - 1]!.version;

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS hf_migrations (
  version    INT NOT NULL PRIMARY KEY,
  name       VARCHAR(100) NOT NULL,
  checksum   VARCHAR(32) NOT NULL,
  applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB`;

/** How long a process waits for another one's migration before giving up (seconds). */
const LOCK_WAIT_S = 60;

/**
 * The statements of a migration file: split at the delimiter ending a line (`;`, or what a
 * `DELIMITER xx` line sets, as the mysql client reads it, for procedure bodies); comment lines
 * and DELIMITER lines dropped.
 */
export function statementsOf(sql: string): string[] {
  const statements: string[] = [];
  let delimiter = ';';
  let current: string[] = [];
  const flush = (): void => {
    const text = current.join('\n').trim();
    if (text.length > 0) statements.push(text);
    current = [];
  };
  for (const line of sql.split('\n')) {
    const directive = /^\s*DELIMITER\s+(\S+)\s*$/i.exec(line);
    if (directive) {
      flush();
      delimiter = directive[1]!;
      continue;
    }
    if (/^\s*--/.test(line)) continue;
    const trimmed = line.trimEnd();
    if (trimmed.endsWith(delimiter)) {
      current.push(trimmed.slice(0, trimmed.length - delimiter.length));
      flush();
    } else {
      current.push(line);
    }
  }
  flush();
  return statements;
}

async function currentVersion(connection: PoolConnection): Promise<number> {
  const [rows] = await connection.query<RowDataPacket[]>('SELECT COALESCE(MAX(version), 0) AS version FROM hf_migrations');
  return Number(rows[0]?.['version'] ?? 0);
}

/** Applies the migrations above the database's recorded version. Returns the versions applied. */
export async function migrate(pool: Pool): Promise<number[]> {
  const connection = await pool.getConnection();
  try {
    // Up to date already (every open after the first): no lock, no DDL.
    const before = await currentVersion(connection).catch(() => null);
    if (before === LATEST_VERSION) return [];
    const [locked] = await connection.query<RowDataPacket[]>(
      `SELECT GET_LOCK(CONCAT('holdfast.migrate.', COALESCE(DATABASE(), '')), ?) AS ok`, [LOCK_WAIT_S],
    );
    if (Number(locked[0]?.['ok']) !== 1) throw new Error(`another process held the holdfast migration lock for ${LOCK_WAIT_S} s`);
    try {
      await connection.query(MIGRATIONS_TABLE);
      const current = await currentVersion(connection);
      if (current > LATEST_VERSION) {
        throw new Error(`the database is at holdfast migration ${current}, newer than this holdfast (${LATEST_VERSION}); upgrade holdfast`);
      }
      const applied: number[] = [];
      for (const migration of MIGRATIONS) {
        if (migration.version <= current) continue;
        for (const statement of statementsOf(migration.sql)) await connection.query(statement);
        await connection.query('INSERT INTO hf_migrations (version, name, checksum) VALUES (?, ?, ?)', [
          migration.version, migration.name, migration.checksum,
        ]);
        applied.push(migration.version);
      }
      return applied;
    } finally {
      await connection.query(`SELECT RELEASE_LOCK(CONCAT('holdfast.migrate.', COALESCE(DATABASE(), '')))`).catch(() => {});
    }
  } finally {
    connection.release();
  }
}

/** Checks that a database migrated by someone else is at this holdfast's version. */
export async function checkVersion(pool: Pool): Promise<void> {
  const connection = await pool.getConnection();
  try {
    const [tables] = await connection.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'hf_migrations'`,
    );
    if (Number(tables[0]?.['n']) === 0) {
      throw new Error('the database has no holdfast migrations table: apply mysqlMigrationScript() or open with migrate: true');
    }
    const current = await currentVersion(connection);
    if (current !== LATEST_VERSION) throw new Error(`the database is at holdfast migration ${current}, this holdfast needs ${LATEST_VERSION}`);
  } finally {
    connection.release();
  }
}

/**
 * The whole migration as one SQL script, for teams that apply migrations themselves (with
 * `migrate: false`): `mysql DB < holdfast.sql`. It applies every migration after version `since`
 * (0: a new database).
 */
export function mysqlMigrationScript(since = 0): string {
  const lines = ['-- holdfast MySQL/MariaDB store: schema migrations.', `${MIGRATIONS_TABLE};`];
  for (const m of MIGRATIONS) {
    if (m.version <= since) continue;
    lines.push(`-- migration ${m.version}: ${m.name}`);
    // A statement with `;` inside (a procedure body) is sent whole between DELIMITER lines.
    for (const statement of statementsOf(m.sql)) {
      lines.push(...(statement.includes(';') ? ['DELIMITER //', `${statement} //`, 'DELIMITER ;'] : [`${statement};`]));
    }
    lines.push(`INSERT INTO hf_migrations (version, name, checksum) VALUES (${m.version}, '${m.name}', '${m.checksum}');`);
  }
  return lines.join('\n') + '\n';
}
