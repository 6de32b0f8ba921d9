/**
 * Fenced writes to a PostgreSQL resource. In one transaction: raise the resource's fence row to
 * `fence` only if it is not newer (the row lock serializes concurrent writers), run `write` with
 * the same client, commit. A stale fence rolls back and runs nothing.
 */
import { checkFencedOptions, type FencedResult, type FencedWriteOptions } from './result.js';

/** The part of a `pg.PoolClient` this needs. */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}
/** The part of a `pg.Pool` this needs. */
export interface PgPoolLike {
  connect(): Promise<
    PgClientLike & {
      release(error?: Error | boolean): void;
      on(event: 'error', listener: (error: Error) => void): unknown;
      off(event: 'error', listener: (error: Error) => void): unknown;
    }
  >;
}

const quote = (parts: string[]): string => parts.map((p) => `"${p}"`).join('.');

/** Creates the fence table if it does not exist. */
export async function ensurePostgresFenceTable(pool: PgPoolLike, table?: string): Promise<void> {
  const name = quote(checkFencedOptions({ resource: 'x', fence: 1, table }));
  const client = await pool.connect();
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS ${name} (resource text PRIMARY KEY, fence bigint NOT NULL)`);
  } finally {
    client.release();
  }
}

export async function fencedWritePostgres<T>(
  pool: PgPoolLike,
  options: FencedWriteOptions,
  write: (client: PgClientLike) => Promise<T>,
): Promise<FencedResult<T>> {
  const name = quote(checkFencedOptions(options));
  const client = await pool.connect();
  let broken: Error | undefined;
  // A connection that drops between statements emits 'error' on the client: without a listener
  // that would crash the process. The failing query rejects, and the client is discarded.
  const onError = (error: Error): void => {
    broken = error;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    try {
      const raised = await client.query(
        `INSERT INTO ${name} AS f (resource, fence) VALUES ($1, $2)
         ON CONFLICT (resource) DO UPDATE SET fence = EXCLUDED.fence WHERE f.fence <= EXCLUDED.fence
         RETURNING fence`,
        [options.resource, options.fence],
      );
      if (raised.rows.length === 0) {
        const current = await client.query(`SELECT fence FROM ${name} WHERE resource = $1`, [options.resource]);
        await client.query('ROLLBACK');
        return { accepted: false, highestFence: Number(current.rows[0]?.['fence'] ?? 0) };
      }
      const value = await write(client);
      await client.query('COMMIT');
      return { accepted: true, value, fence: options.fence };
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    }
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
