/**
 * One transaction on a pooled connection, for code that needs several statements on the same
 * client (the migration runner, fenced writes). BEGIN, run `fn`, then COMMIT — or ROLLBACK when
 * `fn` throws or asks for it. A connection that drops between statements emits 'error' on the
 * client; the listener here keeps that from crashing the process, and a broken client is
 * discarded rather than returned to the pool.
 */

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

/** What the transaction's body returns: its value, and whether to commit (default) or roll back. */
export interface TransactionResult<T> {
  value: T;
  commit?: boolean;
}

export async function inTransaction<T>(pool: PgPoolLike, fn: (client: PgClientLike) => Promise<TransactionResult<T>>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error): void => {
    broken = error;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    try {
      const { value, commit = true } = await fn(client);
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
      return value;
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
