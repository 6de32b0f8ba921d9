/**
 * Fenced writes to a MySQL or MariaDB resource (mysql2/promise). In one transaction: lock the
 * resource's fence row, refuse an older fence, raise it, run `write` on the same connection, commit.
 */
import { checkFencedOptions, type FencedResult, type FencedWriteOptions } from './result.js';

/** The part of a mysql2/promise connection this needs. */
export interface MysqlConnectionLike {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
  beginTransaction(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}
/** The part of a mysql2/promise pool this needs. */
export interface MysqlPoolLike {
  getConnection(): Promise<MysqlConnectionLike & { release(): void }>;
}

const quote = (parts: string[]): string => parts.map((p) => `\`${p}\``).join('.');

export async function ensureMysqlFenceTable(pool: MysqlPoolLike, table?: string): Promise<void> {
  const name = quote(checkFencedOptions({ resource: 'x', fence: 1, table }));
  const connection = await pool.getConnection();
  try {
    await connection.query(`CREATE TABLE IF NOT EXISTS ${name} (resource VARCHAR(512) PRIMARY KEY, fence BIGINT NOT NULL) ENGINE=InnoDB`);
  } finally {
    connection.release();
  }
}

export async function fencedWriteMysql<T>(
  pool: MysqlPoolLike,
  options: FencedWriteOptions,
  write: (connection: MysqlConnectionLike) => Promise<T>,
): Promise<FencedResult<T>> {
  const name = quote(checkFencedOptions(options));
  const connection = await pool.getConnection();
  try {
    await connection.beginTransaction();
    try {
      // Creates the row if missing (fence 0), then locks it until commit.
      await connection.query(`INSERT IGNORE INTO ${name} (resource, fence) VALUES (?, 0)`, [options.resource]);
      const [rows] = await connection.query(`SELECT fence FROM ${name} WHERE resource = ? FOR UPDATE`, [options.resource]);
      const highest = Number((rows as Array<{ fence: number | string }>)[0]?.fence ?? 0);
      if (highest > options.fence) {
        await connection.rollback();
        return { accepted: false, highestFence: highest };
      }
      await connection.query(`UPDATE ${name} SET fence = ? WHERE resource = ?`, [options.fence, options.resource]);
      const value = await write(connection);
      await connection.commit();
      return { accepted: true, value, fence: options.fence };
    } catch (error) {
      await connection.rollback().catch(() => {});
      throw error;
    }
  } finally {
    connection.release();
  }
}
