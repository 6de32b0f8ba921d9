/**
 * `postgres://`: the production store. The lock-table algorithm of `src/stores/table/` runs in
 * PostgreSQL itself, as plpgsql functions (migrations/*.sql), so each operation is one call, one
 * round trip, one READ COMMITTED transaction, serialized against the transactions it can conflict
 * with by advisory locks: on the keys' root segments (migrations/001_baseline/, part 2), or for the lean
 * acquire and release of one key on its path (part 9 of the baseline; such a call may
 * answer `retry`, and the full call follows in a transaction of its own).
 * Time is the database clock; fences come from a sequence and survive restarts.
 *
 * Wake-ups: a grant of a queued ticket made by any process is sent with `pg_notify`; one
 * dedicated LISTEN connection per store object turns those into `acquired` changes for `watch`
 * listeners. Changes made through this object are published from the functions' answers. The
 * operation pool holds no session state, so it works behind a transaction-pooling proxy; a
 * pooled connection that drops is replaced, and the idempotent calls on it are sent again.
 * History is bounded: sweeps prune it to about `historyLimit` events.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { InvalidRequestError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import { DueTimer } from '../due-timer.js';
import {
  toAcquireOutcome, toChange, toHistory, toHoldfastError, toLease, toLockTable, toPollOutcome, toRenewOutcome,
  type SqlResult,
} from './convert.js';
import { GroupCommit, type BatchItem } from './group-commit.js';
import { ChangeHub } from '../change-hub.js';
import { Listener } from './listener.js';
import { checkVersion, migrate } from './migrate.js';
import { resolvePostgresOptions, type PostgresStoreOptions, type ResolvedPostgresOptions } from './options.js';

export type { PostgresStoreOptions } from './options.js';
export { POSTGRES_DEFAULTS, resolvePostgresOptions } from './options.js';
export { migrationScript } from './migrate.js';

/** Follow-up rounds the background lane runs in a row before it lets polls and sweeps take over. */
const FOLLOW_UP_ROUNDS = 5;
/** Items of each kind one sweep settles. */
const SWEEP_BATCH = 500;

/**
 * Functions that may run twice with the same effect and answer: read-only ones, renewals (from
 * the store's now), polls (a ticket granted by the first run is found granted by the second),
 * sweeps and follow-ups. Not acquire (its lease id would be "already used"), release, cancel or
 * the admin operations (their second answer would differ from the first).
 */
const IDEMPOTENT = new Set(['hf_renew', 'hf_poll', 'hf_get', 'hf_list', 'hf_history', 'hf_sweep', 'hf_follow_up', 'hf_recent_grants']);

/** Times a call the deadlock detector aborted is sent again. */
const DEADLOCK_RETRIES = 3;

/** The lease operations that share calls and commits (group-commit.ts, hf_batch). */
const BATCHED = new Set(['hf_acquire', 'hf_acquire_full', 'hf_release', 'hf_release_full', 'hf_renew', 'hf_poll', 'hf_cancel']);

/** An error of a connection that was fine when the pool handed it out and then dropped. */
function isDroppedConnection(error: unknown): boolean {
  const e = (error ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  return (
    code === '57P01' || code === '57P02' || code === '08003' || code === '08006' || code === 'ECONNRESET' || code === 'EPIPE' ||
    /connection terminated|not queryable/i.test(message)
  );
}

/** The NOTIFY channel of a schema (the SQL side computes the same: 'hf_' || md5(current_schema())). */
export function channelOf(schema: string): string {
  return `hf_${createHash('md5').update(schema, 'utf8').digest('hex')}`;
}

export class PostgresStore implements LockStore {
  readonly info: StoreInfo;
  readonly #options: ResolvedPostgresOptions;
  readonly #pool: pg.Pool;
  readonly #ownPool: boolean;
  readonly #schema: string;
  /** Tells this object's own notifications from other processes' ones. */
  readonly #origin = randomBytes(9).toString('base64url');
  readonly #hub = new ChangeHub();
  readonly #listener: Listener | null;
  readonly #pending = new Set<Promise<unknown>>();
  #ready: Promise<void> | null = null;
  #closed = false;
  #due: DueTimer;
  /** The last store time seen, and performance.now() then. */
  #clock = { store: Date.now(), local: performance.now() };
  #droppedAt: number | null = null;
  /** Work the SQL functions deferred (busy roots), for the background lane. */
  #deferred = { roots: new Set<string>(), tickets: new Set<string>() };
  #sweepWanted = false;
  #laneBusy = false;
  /** Pooled connections checked out now (the pool's acquire and release events). */
  #inUse = 0;
  readonly #group: GroupCommit;

  constructor(url: string, options: PostgresStoreOptions = {}) {
    this.#options = resolvePostgresOptions(options);
    // Sweeps at the next due time this object has heard of (expiries, waiter deadlines, delays).
    this.#due = new DueTimer({
      enabled: this.#options.autoSweep,
      fire: () => {
        this.#sweepWanted = true;
        this.#background();
      },
    });
    if (typeof url !== 'string' || (!/^postgres(ql)?:\/\//i.test(url) && !(url === '' && this.#options.pool))) {
      throw new InvalidRequestError('url', 'expected a postgres:// or postgresql:// URL');
    }
    this.#schema = pg.escapeIdentifier(this.#options.schema);
    this.#ownPool = this.#options.pool === undefined;
    this.#pool = this.#options.pool ?? new pg.Pool({
      connectionString: url, max: this.#options.poolSize, connectionTimeoutMillis: this.#options.connectTimeoutMs,
      keepAlive: true, allowExitOnIdle: true, application_name: this.#options.applicationName,
    });
    // An idle connection that breaks is dropped by the pool; never crash the process for it.
    if (this.#ownPool) this.#pool.on('error', () => {});
    this.#pool.on('acquire', () => {
      this.#inUse += 1;
    });
    this.#pool.on('release', () => {
      this.#inUse = Math.max(0, this.#inUse - 1);
    });
    this.#group = new GroupCommit({
      lanes: this.#options.batchLanes,
      maxBatch: this.#options.batchSize,
      idempotent: IDEMPOTENT,
      isDropped: isDroppedConnection,
      convert: (error) => this.#poolExhausted(error) ?? toHoldfastError(error),
      queueTimeoutMs: this.#options.connectTimeoutMs,
      queueTimeout: (waiting) => this.#exhausted(waiting, this.#options.batchLanes, null),
      single: (fn, args) => this.#call(fn, args, undefined),
      batch: async (ops) => (await this.#call('hf_batch', [JSON.stringify(ops)], undefined)) as BatchItem[],
    });
    this.info = { kind: 'postgres', durable: true, wakeups: this.#options.listen ? 'complete' : 'local' };
    this.#listener = this.#options.listen
      ? new Listener({
          config: listenConfig(url, this.#options, this.#pool),
          channel: channelOf(this.#options.schema),
          reconnectMinMs: this.#options.reconnectMinMs,
          reconnectMaxMs: this.#options.reconnectMaxMs,
          onPayload: (payload) => this.#onNotification(payload),
          onReconnect: () => this.#catchUp(),
          onDrop: () => {
            this.#droppedAt ??= this.#storeNow();
          },
        })
      : null;
    this.#ensureReady().catch(() => {});
    this.#listener?.start();
  }

  /** True while the LISTEN connection is up (always false with `listen: false`). */
  get listening(): boolean {
    return this.#listener?.connected ?? false;
  }

  /** The server process id of the LISTEN connection, or null while it is down. */
  get listenerPid(): number | null {
    return this.#listener?.pid ?? null;
  }

  /** Resolves once migrations are applied (or checked) and, with `listen`, the LISTEN is in place. */
  async ready(): Promise<void> {
    await this.#ensureReady();
    await this.#listener?.whenConnected();
  }

  #ensureReady(): Promise<void> {
    if (this.#ready === null) {
      const run = this.#options.migrate ? migrate(this.#pool, this.#options.schema).then(() => {}) : checkVersion(this.#pool, this.#options.schema);
      this.#ready = run.catch((error: unknown) => {
        this.#ready = null; // the next operation tries again
        throw toHoldfastError(error);
      });
    }
    return this.#ready;
  }

  #storeNow(): number {
    return Math.round(this.#clock.store + (performance.now() - this.#clock.local));
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const done = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  /**
   * One SQL function call: `SELECT schema.fn($1, ...)`, its jsonb answer. A call of a function
   * that may safely run twice (`IDEMPOTENT`) that fails because its pooled connection was dropped
   * (terminated backend, server restart, reset socket) is sent once more, on a new connection:
   * the pool discards a broken connection, so a dropped one costs no operation.
   */
  async #query(fn: string, args: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    const run = BATCHED.has(fn) ? this.#group.submit(fn, args, signal) : this.#call(fn, args, signal);
    return this.#track(run);
  }

  /** The call itself, once migrations are in place; errors as holdfast errors. */
  async #call(fn: string, args: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
    const text = `SELECT ${this.#schema}.${fn}(${args.map((_, i) => `$${i + 1}`).join(', ')}) AS r`;
    await this.#ensureReady();
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.#pool.query(text, args);
        return (result.rows[0] as { r: unknown } | undefined)?.r ?? null;
      } catch (error) {
        if (attempt === 1 && IDEMPOTENT.has(fn) && isDroppedConnection(error) && !this.#closed && !signal?.aborted) continue;
        // Aborted by the deadlock detector (a cycle it saw while a batch's operation waited its
        // 1 ms, 002_group_commit.sql): the transaction rolled back, so any call may go again.
        if (attempt <= DEADLOCK_RETRIES && (error as { code?: unknown } | null)?.code === '40P01' && !this.#closed) continue;
        if (fn === 'hf_batch') throw error; // group-commit.ts tells a dropped call from one PostgreSQL refused
        throw this.#poolExhausted(error) ?? toHoldfastError(error);
      }
    }
  }

  /**
   * The error of a call that timed out waiting for a pooled connection while every connection
   * of a full pool was busy: PostgreSQL was reachable, the pool was exhausted. Null otherwise.
   */
  #poolExhausted(error: unknown): StoreUnavailableError | null {
    const message = (error as { message?: unknown } | null)?.message;
    if (typeof message !== 'string' || !/timeout exceeded when trying to connect/i.test(message)) return null;
    const max = this.#pool.options.max ?? this.#options.poolSize;
    if (this.#inUse < max) return null;
    return this.#exhausted(this.#pool.waitingCount, max, error);
  }

  #exhausted(waiting: number, connections: number, cause: unknown): StoreUnavailableError {
    const waitMs = this.#pool.options.connectionTimeoutMillis ?? this.#options.connectTimeoutMs;
    return new StoreUnavailableError(
      `the PostgreSQL connection pool is exhausted: all ${connections} connections were busy for ${waitMs} ms ` +
        `(${waiting} more calls waiting); raise poolSize or connectTimeoutMs, or make fewer concurrent calls`,
      cause === null ? {} : { cause },
    );
  }

  /** A writing operation: its value, after publishing its changes and following up its deferred work. */
  async #write(fn: string, args: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
    let result = (await this.#query(fn, [...args, this.#origin], signal)) as SqlResult & { retry?: boolean };
    // A lean call (hf_acquire, hf_release) that needs the full one answers `retry` instead of
    // upgrading its path locks (baseline part 9); the full call runs in a transaction of its own.
    if (result.retry === true) result = (await this.#query(`${fn}_full`, [...args, this.#origin], signal)) as SqlResult;
    this.#absorb(result);
    return result.value;
  }

  #absorb(result: SqlResult): void {
    this.#clock = { store: result.now, local: performance.now() };
    this.#hub.publish(result.changes);
    this.#due.arm(result.nextDue, result.now);
    if (result.roots.length > 0 || result.tickets.length > 0) {
      for (const root of result.roots) this.#deferred.roots.add(root);
      for (const ticket of result.tickets) this.#deferred.tickets.add(ticket);
      this.#background();
    }
  }

  /**
   * The background lane: follow-ups of deferred work and timer sweeps run one at a time (so
   * they hold at most one pooled connection, even while they wait for a busy root), coalesced.
   */
  #background(): void {
    if (this.#laneBusy || this.#closed) return;
    this.#laneBusy = true;
    const run = async (): Promise<void> => {
      let rounds = 0;
      while (!this.#closed) {
        const { roots, tickets } = this.#deferred;
        if ((roots.size > 0 || tickets.size > 0) && rounds < FOLLOW_UP_ROUNDS) {
          this.#deferred = { roots: new Set(), tickets: new Set() };
          rounds += 1;
          await this.#write('hf_follow_up', [[...roots], [...tickets]], undefined).catch(() => {});
        } else if (this.#sweepWanted) {
          this.#sweepWanted = false;
          await this.sweep().catch(() => {});
        } else {
          break;
        }
      }
      this.#deferred = { roots: new Set(), tickets: new Set() };
      this.#laneBusy = false;
    };
    void this.#track(run());
  }

  #onNotification(payload: string): void {
    let message: { o?: unknown; c?: unknown };
    try {
      message = JSON.parse(payload) as { o?: unknown; c?: unknown };
    } catch {
      return;
    }
    if (message.o === this.#origin || this.#closed) return;
    const change = toChange(message.c);
    if (change !== null) this.#hub.publishOnce(change);
  }

  /** After the LISTEN connection came back: announce the grants made while it was down. */
  #catchUp(): void {
    const since = (this.#droppedAt ?? this.#storeNow()) - 2000;
    this.#droppedAt = null;
    if (this.#closed) return;
    this.#query('hf_recent_grants', [since], undefined)
      .then((value) => {
        const changes = ((value as unknown[] | null) ?? []).map(toChange).filter((c): c is StoreChange => c !== null);
        for (const change of changes) this.#hub.publishOnce(change);
      })
      .catch(() => {});
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    const value = await this.#write('hf_acquire', [JSON.stringify(request), options.waitMs, options.waiterTtlMs], options.signal);
    return toAcquireOutcome(value);
  }

  async poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    return toPollOutcome(await this.#write('hf_poll', [ticket], options.signal));
  }

  async keepAlive(tickets: readonly string[], options: CallOptions = {}): Promise<string[]> {
    if (tickets.length === 0) return [];
    const alive = await this.#query('hf_keep_alive', [tickets], options.signal);
    return Array.isArray(alive) ? alive.filter((id): id is string => typeof id === 'string') : [];
  }

  async cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    if (options.by !== undefined) return (await this.#write('hf_cancel_by', [ticket, options.by], options.signal)) === true;
    return (await this.#write('hf_cancel', [ticket], options.signal)) === true;
  }

  async renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return toRenewOutcome(await this.#write('hf_renew', [leaseId, ttlMs], options.signal));
  }

  async release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    if (options.by !== undefined) return (await this.#write('hf_release_by', [leaseId, options.by], options.signal)) === true;
    return (await this.#write('hf_release', [leaseId], options.signal)) === true;
  }

  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    const value = await this.#query('hf_get', [leaseId], options.signal);
    return value === null ? null : toLease(value as Record<string, unknown>);
  }

  async releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return Number(await this.#write('hf_release_owner', [owner, options.key ?? null, options.by], options.signal));
  }

  async forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return Number(await this.#write('hf_force_release', [key, options.by], options.signal));
  }

  async list(options: ListOptions = {}): Promise<LockTable> {
    return toLockTable(await this.#query('hf_list', [options.prefix ?? ''], options.signal));
  }

  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    const value = await this.#query(
      'hf_history', [query.key ?? null, query.owner ?? null, query.limit ?? 100, query.beforeId ?? null], options.signal,
    );
    return toHistory(value);
  }

  async sweep(options: CallOptions = {}): Promise<number | null> {
    const result = (await this.#query('hf_sweep', [SWEEP_BATCH, this.#origin, this.#options.historyLimit], options.signal)) as SqlResult;
    this.#absorb(result);
    return result.nextDue;
  }

  watch(listener: (change: StoreChange) => void): () => void {
    return this.#hub.watch(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#due.stop();
    await this.#listener?.close();
    await Promise.allSettled([...this.#pending]);
    this.#hub.clear();
    if (this.#ownPool) await this.#pool.end().catch(() => {});
  }
}

function listenConfig(url: string, options: ResolvedPostgresOptions, pool: pg.Pool): pg.ClientConfig {
  const connectionString = options.listenUrl ?? (url !== '' ? url : undefined);
  const application_name = `${options.applicationName} listen`;
  if (connectionString === undefined) return { ...pool.options, application_name, connectionTimeoutMillis: options.connectTimeoutMs };
  return { connectionString, application_name, connectionTimeoutMillis: options.connectTimeoutMs };
}

/** Opens the `postgres://` store. Migrations run in the background; the first operation waits for them. */
export function createPostgresStore(url: string, options: PostgresStoreOptions = {}): PostgresStore {
  return new PostgresStore(url, options);
}
