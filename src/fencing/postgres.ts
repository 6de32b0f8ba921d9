/**
 * Fenced writes to a PostgreSQL resource. In one transaction: raise the resource's fence row to
 * `fence` only if it is not newer (the row lock serializes concurrent writers), run `write` with
 * the same client, commit. A stale fence rolls back and runs nothing.
 */
import { inTransaction, type PgClientLike, type PgPoolLike, type TransactionResult } from '../stores/postgres/transaction.js';
import { checkFencedOptions, type FencedResult, type FencedWriteOptions } from './result.js';

export type { PgClientLike, PgPoolLike };

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
  return inTransaction(pool, async (client): Promise<TransactionResult<FencedResult<T>>> => {
    const raised = await client.query(
      `INSERT INTO ${name} AS f (resource, fence) VALUES ($1, $2)
       ON CONFLICT (resource) DO UPDATE SET fence = EXCLUDED.fence WHERE f.fence <= EXCLUDED.fence
       RETURNING fence`,
      [options.resource, options.fence],
    );
    if (raised.rows.length === 0) {
      // Stale: a newer fence was seen. Nothing is written; the transaction rolls back.
      const current = await client.query(`SELECT fence FROM ${name} WHERE resource = $1`, [options.resource]);
      return { value: { accepted: false, highestFence: Number(current.rows[0]?.['fence'] ?? 0) }, commit: false };
    }
    return { value: { accepted: true, value: await write(client), fence: options.fence } };
  });
}
