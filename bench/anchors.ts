/**
 * The anchors holdfast is measured against, written here so their cost is plain to see:
 *
 *   async-mutex     a `Mutex` per key (in-process, nothing else)
 *   naive SQLite    one table, `INSERT ... ON CONFLICT(key) DO UPDATE ... WHERE expired` + `DELETE`
 *   naive Postgres  the same in PostgreSQL (database clock, same durability, same pool size)
 *   advisory        `pg_try_advisory_lock` / `pg_advisory_unlock` on one pooled connection
 *                   (non-durable: session locks vanish with the connection; a reference floor)
 *   poll-10ms       a waiter that retries a try-lock every 10 ms
 *   redlock-retry   a waiter with node-redlock's default retry: retryDelay 200 ms, retryJitter
 *                   100 ms, i.e. 200 ± 100 ms between attempts (redlock 4 and 5 defaults), but
 *                   retrying until granted (redlock itself gives up after retryCount 10)
 *
 * None of these has fences, a queue, waiter order, metadata or history.
 */
import { randomBytes } from 'node:crypto';
import { Mutex } from 'async-mutex';
import Database from 'better-sqlite3';
import pg from 'pg';
import { HoldfastError, type Lease, type Locks } from '../src/index.js';
import { countingPool, type CallCounter } from './counting.js';
import { sleep } from './harness.js';

export class KeyedMutex {
  readonly #mutexes = new Map<string, Mutex>();

  /** Waits for the key's mutex; returns its release function. */
  acquire(key: string): Promise<() => void> {
    let mutex = this.#mutexes.get(key);
    if (!mutex) this.#mutexes.set(key, (mutex = new Mutex()));
    return mutex.acquire();
  }
}

export const token = (): string => randomBytes(12).toString('base64url');

/** One table, no queue: a try-lock that succeeds when the key is free or its holder expired. */
export class NaiveSqliteLock {
  readonly #db: Database.Database;
  readonly #acquire: Database.Statement<[string, string, number, number]>;
  readonly #release: Database.Statement<[string, string]>;

  constructor(path: string, synchronous: 'NORMAL' | 'FULL') {
    this.#db = new Database(path, { timeout: 5000 });
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma(`synchronous = ${synchronous === 'FULL' ? 'FULL' : 'NORMAL'}`);
    this.#db.exec(`CREATE TABLE IF NOT EXISTS naive_locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
    this.#acquire = this.#db.prepare<[string, string, number, number]>(
      `INSERT INTO naive_locks (key, owner, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE naive_locks.expires_at < ?`,
    );
    this.#release = this.#db.prepare<[string, string]>(`DELETE FROM naive_locks WHERE key = ? AND owner = ?`);
  }

  /** The owner token when granted, null when busy. */
  tryAcquire(key: string, ttlMs: number): string | null {
    const owner = token();
    const now = Date.now();
    return this.#acquire.run(key, owner, now + ttlMs, now).changes === 1 ? owner : null;
  }

  release(key: string, owner: string): boolean {
    return this.#release.run(key, owner).changes === 1;
  }

  close(): void {
    this.#db.close();
  }
}

/** The same single-table lock in PostgreSQL, on its own pool, in the benchmark's schema. */
export class NaivePostgresLock {
  readonly pool: pg.Pool;
  readonly #table: string;

  private constructor(pool: pg.Pool, table: string) {
    this.pool = pool;
    this.#table = table;
  }

  /** `counter` counts the queries. */
  static async open(url: string, schema: string, poolSize: number, counter?: CallCounter): Promise<NaivePostgresLock> {
    const raw = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 5000, allowExitOnIdle: true, application_name: 'holdfast-bench' });
    raw.on('error', () => {});
    const pool = counter ? countingPool(raw, counter) : raw;
    const table = `${pg.escapeIdentifier(schema)}.naive_locks`;
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (key text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL)`);
    return new NaivePostgresLock(pool, table);
  }

  async tryAcquire(key: string, ttlMs: number): Promise<string | null> {
    const owner = token();
    const result = await this.pool.query(
      `INSERT INTO ${this.#table} (key, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE ${this.#table}.expires_at < now()`,
      [key, owner, ttlMs],
    );
    return result.rowCount === 1 ? owner : null;
  }

  async release(key: string, owner: string): Promise<boolean> {
    const result = await this.pool.query(`DELETE FROM ${this.#table} WHERE key = $1 AND owner = $2`, [key, owner]);
    return result.rowCount === 1;
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

/** `pg_try_advisory_lock` + `pg_advisory_unlock` on one connection checked out for the pair. */
export class AdvisoryLock {
  readonly pool: pg.Pool;
  readonly #counter: CallCounter | undefined;

  /** `counter` counts the queries. */
  constructor(url: string, poolSize: number, counter?: CallCounter) {
    this.pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 5000, allowExitOnIdle: true, application_name: 'holdfast-bench' });
    this.pool.on('error', () => {});
    this.#counter = counter;
  }

  /** Runs one acquire+release pair on `id`; false when busy. */
  async pair(id: number): Promise<boolean> {
    const client = await this.pool.connect();
    try {
      this.#counter?.count('pg_try_advisory_lock');
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [id]);
      if (!rows[0]?.ok) return false;
      this.#counter?.count('pg_advisory_unlock');
      await client.query('SELECT pg_advisory_unlock($1)', [id]);
      return true;
    } finally {
      client.release();
    }
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

// ------------------------------------------------------------------------- waiting strategies

/** How a client waits for a busy key: holdfast's queue, or a loop over `tryAcquire`. */
export interface WaitStrategy {
  name: string;
  /** The strategy's retry period: holders wait a random 0..phaseMs before releasing, so the anchors' retries fall at random phases. */
  phaseMs: number;
  /**
   * Waits for `key`. A polling strategy calls `onWaiting` after its first failed attempt
   * (holdfast's queueing is seen by the store proxy). A call that fails with STORE_UNAVAILABLE
   * (e.g. a pool too busy to hand out a connection in time) is counted with `onError` and
   * retried after 10 ms, as a client would.
   */
  wait(locks: Locks, key: string, options: WaitOptions): Promise<Lease>;
}

export interface WaitOptions {
  owner: string;
  signal: AbortSignal;
  onWaiting: () => void;
  onError?: (error: unknown) => void;
}

const LONG_WAIT_MS = 600_000;
const ERROR_RETRY_MS = 10;

async function retryingUnavailable<T>(options: WaitOptions, attempt: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      const unavailable = error instanceof HoldfastError && error.code === 'STORE_UNAVAILABLE';
      if (!unavailable || options.signal.aborted) throw error;
      options.onError?.(error);
      await sleep(ERROR_RETRY_MS, options.signal);
    }
  }
}

export const queueWait: WaitStrategy = {
  name: 'holdfast',
  phaseMs: 0,
  wait: (locks, key, options) =>
    retryingUnavailable(options, () => locks.acquire(key, { owner: options.owner, waitMs: LONG_WAIT_MS, signal: options.signal, autoRenew: false })),
};

/** A waiter looping over `tryAcquire`, sleeping `nextDelay()` ms between attempts. */
export function pollingWait(name: string, phaseMs: number, nextDelay: () => number): WaitStrategy {
  return {
    name,
    phaseMs,
    async wait(locks, key, options) {
      const { owner, signal, onWaiting } = options;
      for (;;) {
        signal.throwIfAborted();
        const lease = await retryingUnavailable(options, () => locks.tryAcquire(key, { owner, signal, autoRenew: false }));
        if (lease) return lease;
        onWaiting();
        await sleep(nextDelay(), signal);
      }
    },
  };
}

export const POLL_MS = 10;
export const REDLOCK_RETRY_DELAY_MS = 200;
export const REDLOCK_RETRY_JITTER_MS = 100;

/**
 * The waiting strategies of the hand-off and contention suites. `timeScale` shrinks the anchors'
 * intervals (smoke runs only, whose numbers are not read).
 */
export function waitStrategies(timeScale = 1): WaitStrategy[] {
  const redlockMax = REDLOCK_RETRY_DELAY_MS + REDLOCK_RETRY_JITTER_MS;
  return [
    queueWait,
    pollingWait('poll-10ms', POLL_MS * timeScale, () => POLL_MS * timeScale),
    pollingWait('redlock-retry', redlockMax * timeScale, () =>
      Math.max(0, REDLOCK_RETRY_DELAY_MS + Math.floor((Math.random() * 2 - 1) * REDLOCK_RETRY_JITTER_MS)) * timeScale,
    ),
  ];
}
