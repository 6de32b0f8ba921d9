/** Options of the `mysql://` store (MySQL 8.0, MariaDB 10.11): defaults in one frozen object, validation naming the field. */
import { typeName } from '../../model/duration.js';
import { InvalidRequestError } from '../../model/errors.js';
import { booleanOption as boolean, integerIn } from '../../model/option-checks.js';

export interface MysqlStoreOptions {
  /**
   * Apply the store's migrations when the store opens (under `GET_LOCK`, so processes that start
   * together apply each migration once). `false` for teams that migrate themselves (see
   * `mysqlMigrationScript`); the store then only checks the database's version.
   * @default true
   */
  migrate?: boolean | undefined;
  /**
   * Connections of the operation pool. 1 to 1000.
   * @default 10
   */
  poolSize?: number | undefined;
  /**
   * How long opening a connection may take before the operation fails with STORE_UNAVAILABLE.
   * 100 to 600000 ms.
   * @default 5000
   */
  connectTimeoutMs?: number | undefined;
  /**
   * While this process has queued tickets, how often its one watcher reads the change log for
   * grants made by other processes. 1 to 1000 ms.
   * @default 2
   */
  watchIntervalMs?: number | undefined;
  /**
   * End expired leases and dead waiters from this process at the next due time known to it (an
   * unref'd timer), so hand-offs on expiry need no poll. Several processes may all do it; the
   * store settles each item once.
   * @default true
   */
  autoSweep?: boolean | undefined;
  /**
   * How many ended leases to keep as history, about: each sweep deletes the ended lease rows whose
   * fence is more than this far below the newest one. Renewing a lease whose row was pruned says
   * NOT_FOUND instead of LEASE_LOST (either way the lease is gone). 1000 to 1000000000.
   * @default 100000
   */
  historyLimit?: number | undefined;
  /**
   * Attempts of one operation whose transaction the database rolled back as a deadlock victim or
   * for a lock-wait timeout, before it fails with STORE_UNAVAILABLE. 1 to 1000.
   * @default 50
   */
  maxAttempts?: number | undefined;
}

export const MYSQL_DEFAULTS = Object.freeze({
  migrate: true,
  poolSize: 10,
  connectTimeoutMs: 5000,
  watchIntervalMs: 2,
  autoSweep: true,
  historyLimit: 100_000,
  maxAttempts: 50,
});

export interface ResolvedMysqlOptions {
  migrate: boolean;
  poolSize: number;
  connectTimeoutMs: number;
  watchIntervalMs: number;
  autoSweep: boolean;
  historyLimit: number;
  maxAttempts: number;
}

const OPTION_NAMES = new Set(Object.keys(MYSQL_DEFAULTS));

/** Fills in defaults and checks every option, naming the bad one. */
export function resolveMysqlOptions(options: MysqlStoreOptions = {}): ResolvedMysqlOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown option of the mysql store');
  }
  const d = MYSQL_DEFAULTS;
  return {
    migrate: boolean(options.migrate ?? d.migrate, 'options.migrate'),
    poolSize: integerIn(options.poolSize ?? d.poolSize, 'options.poolSize', 1, 1000),
    connectTimeoutMs: integerIn(options.connectTimeoutMs ?? d.connectTimeoutMs, 'options.connectTimeoutMs', 100, 600_000),
    watchIntervalMs: integerIn(options.watchIntervalMs ?? d.watchIntervalMs, 'options.watchIntervalMs', 1, 1000),
    autoSweep: boolean(options.autoSweep ?? d.autoSweep, 'options.autoSweep'),
    historyLimit: integerIn(options.historyLimit ?? d.historyLimit, 'options.historyLimit', 1000, 1_000_000_000),
    maxAttempts: integerIn(options.maxAttempts ?? d.maxAttempts, 'options.maxAttempts', 1, 1000),
  };
}
