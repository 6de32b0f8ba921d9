/** Options of the `postgres://` store: defaults in one frozen object, validation naming the field. */
import type pg from 'pg';
import { typeName } from '../../model/duration.js';
import { InvalidRequestError } from '../../model/errors.js';
import { booleanOption, integerIn } from '../../model/option-checks.js';

export interface PostgresStoreOptions {
  /**
   * The schema that holds the store's tables and functions (created when `migrate` is on). Any
   * identifier up to 63 bytes; it is always quoted, never pasted into SQL raw.
   * @default 'holdfast'
   */
  schema?: string | undefined;
  /**
   * Apply the store's migrations when the store opens (inside one transaction under an advisory
   * lock, so processes that start together apply each migration once). `false` for teams that
   * migrate themselves (see `migrationScript`); the store then only checks the schema's version.
   * @default true
   */
  migrate?: boolean | undefined;
  /**
   * Connections of the operation pool (ignored when `pool` is given). 1 to 1000.
   * @default 10
   */
  poolSize?: number | undefined;
  /**
   * An existing `pg.Pool` to run operations on, instead of one the store creates from the URL.
   * The store never ends it. The LISTEN connection still uses the URL (or the pool's options
   * when the URL is empty).
   * @default undefined
   */
  pool?: pg.Pool | undefined;
  /**
   * Keep one dedicated connection that LISTENs for grants made by other processes, so their
   * waiters are woken at once (`info.wakeups: 'complete'`). Reconnects with backoff when dropped;
   * meanwhile waiters fall back to their heartbeat polls. `false`: waiters poll (`'local'`).
   * @default true
   */
  listen?: boolean | undefined;
  /**
   * Where the LISTEN connection goes, when it must bypass a transaction-pooling proxy (LISTEN
   * needs a session of its own); operations keep using the store URL or `pool`. A postgres:// URL.
   * @default undefined (the store URL)
   */
  listenUrl?: string | undefined;
  /**
   * How long opening a connection may take before the operation fails with STORE_UNAVAILABLE.
   * 100 to 600000 ms.
   * @default 5000
   */
  connectTimeoutMs?: number | undefined;
  /**
   * The first delay before the LISTEN connection is re-opened after a drop; it doubles on each
   * failure up to `reconnectMaxMs`. 10 to 600000 ms.
   * @default 100
   */
  reconnectMinMs?: number | undefined;
  /**
   * The longest delay between two attempts to re-open the LISTEN connection. 10 to 600000 ms.
   * @default 5000
   */
  reconnectMaxMs?: number | undefined;
  /**
   * End expired leases and dead waiters from this process at the next due time known to it (a
   * timer, unref'd), so hand-offs on expiry need no poll. Several processes may all do it; the
   * store settles each item once.
   * @default true
   */
  autoSweep?: boolean | undefined;
  /**
   * How many history events to keep, about: each sweep deletes the events whose id is more than
   * this far below the newest one (an index range on the primary key, at most 5000 rows per
   * sweep, skipping rows another sweep is deleting). Ids may have gaps (rolled-back
   * transactions), so slightly fewer may be kept. The history is also how an ended lease is told
   * from an unknown id: renewing a lease whose end was pruned says NOT_FOUND instead of
   * LEASE_LOST (the same tradeoff as the SQLite store; either way the lease is gone). Pruning
   * runs in `sweep`, so with `autoSweep: false` call `sweep()` now and then. 1000 to 1000000000.
   * @default 100000
   */
  historyLimit?: number | undefined;
  /**
   * The `application_name` of the store's connections, as `pg_stat_activity` shows them; the
   * LISTEN connection gets `<name> listen`. An `application_name` in the URL wins. Printable
   * ASCII, 1 to 50 characters (ignored for the operations when `pool` is given).
   * @default 'holdfast'
   */
  applicationName?: string | undefined;
  /**
   * Group commit: the most lease operations (acquire, release, renew, poll, cancel) issued
   * concurrently in this process that share one call and one commit. An operation is sent at
   * once, alone, when no call is in flight; while one is, it waits and goes with the others that
   * queued meanwhile, each operation keeping its own answer and error, in order (no timer, so no
   * added latency for a lone caller). 1 to 64; 1 turns group commit off.
   * @default 16
   */
  batchSize?: number | undefined;
  /**
   * Group commit: calls with lease operations in flight at once (each on a pooled connection),
   * 1 to `poolSize`. Operations beyond them queue for the next call; one that waits there longer
   * than `connectTimeoutMs` fails with STORE_UNAVAILABLE (the pool is exhausted), as a call that
   * waits that long for a pooled connection does. With 2 lanes of 16, 32 callers kept both cores
   * of the development machine busy (docs/benchmarks.md); more lanes suit a database with more
   * cores, and keep a call that waits for a lock another process holds from delaying the rest.
   * @default 2 (1 with `poolSize: 1`)
   */
  batchLanes?: number | undefined;
}

export const POSTGRES_DEFAULTS = Object.freeze({
  schema: 'holdfast',
  migrate: true,
  poolSize: 10,
  pool: undefined,
  listen: true,
  listenUrl: undefined,
  connectTimeoutMs: 5000,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
  autoSweep: true,
  historyLimit: 100_000,
  applicationName: 'holdfast',
  batchSize: 16,
  batchLanes: 2,
});

export interface ResolvedPostgresOptions {
  schema: string;
  migrate: boolean;
  poolSize: number;
  pool: pg.Pool | undefined;
  listen: boolean;
  listenUrl: string | undefined;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  autoSweep: boolean;
  historyLimit: number;
  applicationName: string;
  batchSize: number;
  batchLanes: number;
}

const OPTION_NAMES = new Set(Object.keys(POSTGRES_DEFAULTS));

/** Fills in defaults and checks every option, naming the bad one. */
export function resolvePostgresOptions(options: PostgresStoreOptions = {}): ResolvedPostgresOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown option of the postgres store');
  }
  const schema = options.schema ?? POSTGRES_DEFAULTS.schema;
  if (typeof schema !== 'string') throw new InvalidRequestError('options.schema', `expected a string, got ${typeName(schema)}`);
  const bytes = Buffer.byteLength(schema, 'utf8');
  if (bytes < 1 || bytes > 63) throw new InvalidRequestError('options.schema', `expected 1..63 bytes, got ${bytes}`);
  if (/[\u0000-\u001f\u007f]/.test(schema)) throw new InvalidRequestError('options.schema', 'control characters are not allowed');
  const pool = options.pool ?? POSTGRES_DEFAULTS.pool;
  if (pool !== undefined && (typeof pool !== 'object' || pool === null || typeof (pool as { query?: unknown }).query !== 'function')) {
    throw new InvalidRequestError('options.pool', `expected a pg.Pool, got ${typeName(pool)}`);
  }
  const resolved: ResolvedPostgresOptions = {
    schema,
    migrate: booleanOption(options.migrate ?? POSTGRES_DEFAULTS.migrate, 'options.migrate'),
    poolSize: integerIn(options.poolSize ?? POSTGRES_DEFAULTS.poolSize, 'options.poolSize', 1, 1000),
    pool,
    listen: booleanOption(options.listen ?? POSTGRES_DEFAULTS.listen, 'options.listen'),
    listenUrl: options.listenUrl ?? POSTGRES_DEFAULTS.listenUrl,
    connectTimeoutMs: integerIn(options.connectTimeoutMs ?? POSTGRES_DEFAULTS.connectTimeoutMs, 'options.connectTimeoutMs', 100, 600_000),
    reconnectMinMs: integerIn(options.reconnectMinMs ?? POSTGRES_DEFAULTS.reconnectMinMs, 'options.reconnectMinMs', 10, 600_000),
    reconnectMaxMs: integerIn(options.reconnectMaxMs ?? POSTGRES_DEFAULTS.reconnectMaxMs, 'options.reconnectMaxMs', 10, 600_000),
    autoSweep: booleanOption(options.autoSweep ?? POSTGRES_DEFAULTS.autoSweep, 'options.autoSweep'),
    historyLimit: integerIn(options.historyLimit ?? POSTGRES_DEFAULTS.historyLimit, 'options.historyLimit', 1000, 1_000_000_000),
    applicationName: options.applicationName ?? POSTGRES_DEFAULTS.applicationName,
    batchSize: integerIn(options.batchSize ?? POSTGRES_DEFAULTS.batchSize, 'options.batchSize', 1, 64),
    batchLanes: integerIn(options.batchLanes ?? POSTGRES_DEFAULTS.batchLanes, 'options.batchLanes', 1, 1000),
  };
  if (typeof resolved.applicationName !== 'string' || !/^[\x20-\x7e]{1,50}$/.test(resolved.applicationName)) {
    throw new InvalidRequestError('options.applicationName', `expected 1..50 printable ASCII characters, got ${typeName(resolved.applicationName)}`);
  }
  if (resolved.listenUrl !== undefined && (typeof resolved.listenUrl !== 'string' || !/^postgres(ql)?:\/\//i.test(resolved.listenUrl))) {
    throw new InvalidRequestError('options.listenUrl', `expected a postgres:// URL, got ${typeName(resolved.listenUrl)}`);
  }
  if (options.batchLanes === undefined) resolved.batchLanes = Math.min(resolved.batchLanes, resolved.poolSize);
  if (pool === undefined && resolved.batchLanes > resolved.poolSize) {
    throw new InvalidRequestError('options.batchLanes', `expected at most poolSize (${resolved.poolSize}), got ${resolved.batchLanes}`);
  }
  if (resolved.reconnectMaxMs < resolved.reconnectMinMs) {
    throw new InvalidRequestError('options.reconnectMaxMs', `expected at least reconnectMinMs (${resolved.reconnectMinMs}), got ${resolved.reconnectMaxMs}`);
  }
  return resolved;
}
