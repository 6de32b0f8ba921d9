/** Shared helpers of the postgres store tests: a fresh schema per file, requests, waiting. */
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import pg from 'pg';
import { validateRequest, type RequestInput } from '../../../src/model/request.js';
import type { LeaseRecord, LockRequest } from '../../../src/model/types.js';
import { createPostgresStore, type PostgresStore, type PostgresStoreOptions } from '../../../src/stores/postgres/store.js';

export const POSTGRES_URL = process.env['HOLDFAST_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Keeps the event loop alive while `promise` waits on unref'd timers only (lease renewals, fencing). */
export async function keepAlive<T>(promise: Promise<T>): Promise<T> {
  const timer = setInterval(() => {}, 1000);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

/** A schema name no other test uses. */
export function freshSchema(): string {
  return `hf_test_${randomBytes(6).toString('hex')}`;
}

/** Opens a store on `schema` and waits until it is migrated (and listening). */
export async function openStore(schema: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const store = createPostgresStore(POSTGRES_URL, { schema, poolSize: 4, ...options });
  await store.ready();
  return store;
}

/**
 * For one `describe` block: a fresh schema and a store on it, opened (and the schema migrated)
 * before the block's tests and closed, with the schema dropped, after them. Read `store` inside tests.
 */
export function suiteStore(options: PostgresStoreOptions = {}): { readonly schema: string; readonly store: PostgresStore } {
  const schema = freshSchema();
  let store: PostgresStore | null = null;
  before(async () => {
    store = await openStore(schema, options);
  });
  after(async () => {
    await store?.close();
    await dropSchema(schema);
  });
  return {
    schema,
    get store(): PostgresStore {
      if (store === null) throw new Error('the suite\'s store opens in before()');
      return store;
    },
  };
}

/** Runs one statement on a short-lived connection. */
export async function admin<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Holds the store's advisory lock of a root on its own connection until `release` is called. */
export async function holdRoot(schema: string, root: string): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 7262))`, [schema, root]);
  return {
    release: async () => {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** Holds the path locks of `key` (baseline part 9: its ancestors shared, the key exclusive) in an open transaction. */
export async function holdPath(schema: string, key: string): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT set_config('search_path', $1, true)`, [pg.escapeIdentifier(schema)]);
  await client.query(`SELECT ${pg.escapeIdentifier(schema)}.hf_lock_path($1)`, [key]);
  return {
    release: async () => {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** Terminates the server processes of every connection named `applicationName`; their pids. */
export async function terminateConnections(applicationName: string): Promise<number[]> {
  const rows = await admin<{ pid: number }>(
    'SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
    [applicationName],
  );
  return rows.map((r) => r.pid);
}

export async function dropSchema(schema: string): Promise<void> {
  await admin(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
}

/** A validated request (`id` optional: a fresh lease id by default). */
export function request(input: RequestInput, id?: string): LockRequest {
  return validateRequest({ ttlMs: 60_000, ...input }, id).request;
}

/**
 * Acquires, waiting up to `waitMs` in the store's queue: polls on each push notice for the
 * ticket, at the store's `nextCheckMs` hint, and at least every `pollMs`.
 */
export async function acquireWaiting(
  store: PostgresStore, req: LockRequest, waitMs: number, pollMs = 200,
): Promise<LeaseRecord | null> {
  // Watch before asking: the grant's notice may arrive before the answer that queued the ticket.
  const ticket = req.id;
  let wake: (() => void) | null = null;
  let woken = false;
  const unwatch = store.watch((change) => {
    if (!change.granted.includes(ticket)) return;
    woken = true;
    wake?.();
  });
  try {
    const first = await store.acquire(req, { waitMs, waiterTtlMs: 5000 });
    if (first.status === 'granted') return first.lease;
    if (first.status === 'busy') return null;
    const deadline = performance.now() + waitMs + 2000;
    let nextCheck = first.nextCheckMs;
    while (performance.now() < deadline) {
      if (!woken) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(pollMs, nextCheck + 1));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      woken = false;
      wake = null;
      const outcome = await store.poll(ticket);
      if (outcome.status === 'granted') return outcome.lease;
      if (outcome.status === 'gone') return null;
      nextCheck = outcome.nextCheckMs;
    }
    await store.cancel(ticket);
    return null;
  } finally {
    unwatch();
  }
}
