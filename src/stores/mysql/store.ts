/**
 * `mysql://` (and `mariadb://`): the store on MySQL 8.0 or MariaDB 10.11, for users whose
 * database is already MySQL (Cloudron keeps its own locks there).
 *
 * Each operation is one READ COMMITTED transaction (transaction.ts): it locks the root segments
 * of its keys in sorted order, reads the database clock after the locks, runs the shared
 * lock-table algorithm of `src/stores/table/` on what lies under those roots, and writes the
 * result with the COMMIT. The queue, the fence counter and every conflict decision live in the
 * database, so any number of processes share one FIFO queue. Fences are the AUTO_INCREMENT key of
 * the lease row (one row per lease, kept as its history), which survives restarts.
 *
 * Wake-ups: grants made through this object are pushed from its own answers. A grant of a queued
 * ticket is also written to a change log (`hf_changes`); while this process has queued tickets,
 * one watcher per store object reads that log every `watchIntervalMs` (default 2 ms) and pushes
 * other processes' grants (`info.wakeups: 'complete'`). Expiries are settled by an unref'd timer
 * at the next due time (every process that knows it), so they hand off without polling.
 */
import { randomBytes } from 'node:crypto';
import mysql, { type Pool, type RowDataPacket } from 'mysql2/promise';
import { InvalidRequestError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import { DueTimer } from '../due-timer.js';
import { ChangeListeners, RecentIds } from '../change-fanout.js';
import * as ops from '../table/operations.js';
import { nextDueOf, toHistory, toHoldfastError, toLease, toWaiter, type Row } from './convert.js';
import { checkVersion, migrate } from './migrate.js';
import { resolveMysqlOptions, type MysqlStoreOptions, type ResolvedMysqlOptions } from './options.js';
import { ALL_ROOTS, rootOf, rootsOf, SnapshotState } from './snapshot.js';
import * as sql from './sql.js';
import { Transactions, type OperationSpec } from './transaction.js';
import { Watcher } from './watcher.js';
import { leanPoll } from './lean-poll.js';
import { leanAcquire, leanHandoff, leanRelease, leanRenew, type LeanAnswer } from './lean.js';

export type { MysqlStoreOptions } from './options.js';
export { MYSQL_DEFAULTS, resolveMysqlOptions } from './options.js';
export { mysqlMigrationScript } from './migrate.js';

/** Ids whose roots this object remembers (so a poll or renew locks the right roots at once). */
const REMEMBERED = 10_000;
/** Grants remembered so a change-log row and an own answer do not announce one twice. */
const RECENT_GRANTS = 4096;
/** Roots of due items one sweep settles, per kind. */
const SWEEP_BATCH = 100;
/** Change-log rows older than this are pruned by sweeps. */
const CHANGES_KEPT_MS = 60_000;
const PRUNE_BATCH = 5000;
const DEFAULT_HISTORY_PAGE = 100;
/** How long a root stays "contended" after its lean path found something in the way. */
const CONTENDED_MS = 1000;

export class MysqlStore implements LockStore {
  readonly info: StoreInfo = { kind: 'mysql', durable: true, wakeups: 'complete' };
  readonly #options: ResolvedMysqlOptions;
  readonly #pool: Pool;
  readonly #tx: Transactions;
  readonly #watcher: Watcher;
  readonly #origin = randomBytes(12).toString('base64url');
  readonly #listeners = new ChangeListeners();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #roots = new Map<string, string[]>();
  readonly #recent = new RecentIds(RECENT_GRANTS);
  readonly #rootsSeen = new Set<string>();
  /** Roots whose lean path found something in the way, until when (performance.now()). */
  readonly #contention = new Map<string, number>();
  /** Roots where the one-CALL hand-off could not decide a release lately (performance.now() until). */
  readonly #unhandable = new Map<string, number>();
  /** Tickets of this object still queued, with the local time after which they are surely gone. */
  readonly #queued = new Map<string, number>();
  #ready: Promise<void> | null = null;
  #closed = false;
  #due: DueTimer;
  #sweeping: Promise<unknown> | null = null;

  constructor(url: string, options: MysqlStoreOptions = {}) {
    this.#options = resolveMysqlOptions(options);
    // Sweeps at the next due time this object has heard of (expiries, waiter deadlines, delays).
    this.#due = new DueTimer({
      enabled: this.#options.autoSweep,
      fire: () => {
        if (this.#sweeping !== null || this.#closed) return;
        this.#sweeping = this.sweep()
          .catch(() => {})
          .finally(() => (this.#sweeping = null));
      },
    });
    if (typeof url !== 'string' || !/^(mysql|mariadb):\/\//i.test(url)) {
      throw new InvalidRequestError('url', 'expected a mysql:// or mariadb:// URL, for example mysql://user@host:3306/database');
    }
    let parsed: URL;
    try {
      parsed = new URL(url.replace(/^mariadb:/i, 'mysql:'));
    } catch (error) {
      throw new InvalidRequestError('url', 'expected mysql://user@host:port/database', { cause: error });
    }
    if (parsed.pathname.replace(/^\//, '') === '') throw new InvalidRequestError('url', 'expected a database name: mysql://user@host:port/database');
    this.#pool = mysql.createPool({
      uri: parsed.toString(),
      connectionLimit: this.#options.poolSize,
      connectTimeout: this.#options.connectTimeoutMs,
      multipleStatements: true,
      supportBigNumbers: true,
      charset: 'utf8mb4',
      enableKeepAlive: true,
      maxIdle: this.#options.poolSize,
    });
    // Every connection: UTC session time (store time in ms comes from UNIX_TIMESTAMP(SYSDATE(6)))
    // and READ COMMITTED, before its first query; a connection where that fails is destroyed (its
    // queued queries fail as a lost connection), so none runs without it.
    // An idle connection that breaks is dropped by the pool; never crash the process for it.
    this.#pool.on('connection', (connection) => {
      const core = connection as unknown as { on(event: 'error', f: () => void): void; query(text: string, f: (error: unknown) => void): void; destroy(): void };
      core.on('error', () => {});
      core.query(sql.CONNECTION_SETUP, (error) => {
        if (error) core.destroy();
      });
    });
    this.#tx = new Transactions(this.#pool, { maxAttempts: this.#options.maxAttempts, origin: this.#origin });
    this.#watcher = new Watcher({
      pool: this.#pool, origin: this.#origin, intervalMs: this.#options.watchIntervalMs,
      onGrant: (change) => this.#onOtherGrant(change),
    });
    this.#ensureReady().catch(() => {});
  }

  /** Resolves once the migrations are applied (or checked). */
  async ready(): Promise<void> {
    await this.#ensureReady();
  }

  #ensureReady(): Promise<void> {
    if (this.#ready === null) {
      const run = this.#options.migrate ? migrate(this.#pool).then(() => {}) : checkVersion(this.#pool);
      this.#ready = run.catch((error: unknown) => {
        this.#ready = null; // the next operation tries again
        throw toHoldfastError(error);
      });
    }
    return this.#ready;
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const done = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  #remember(id: string, roots: string[]): void {
    this.#roots.delete(id);
    this.#roots.set(id, roots);
    if (this.#roots.size > REMEMBERED) this.#roots.delete(this.#roots.keys().next().value!);
  }

  /** One write operation: runs it, publishes its changes, re-arms the sweep timer. */
  async #write<T>(spec: OperationSpec<T>, signal: AbortSignal | undefined): Promise<{ value: T; changeId: number; nextDue: number | null | undefined }> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    const run = async (): Promise<{ value: T; changeId: number; nextDue: number | null | undefined }> => {
      await this.#ensureReady();
      const { result, nextDue, changeId } = await this.#tx.run(spec, signal);
      this.#publish(result.changes);
      if (nextDue !== undefined) this.#due.arm(nextDue, result.now);
      if (result.error) throw result.error;
      return { value: result.value, changeId, nextDue };
    };
    return this.#track(run());
  }

  async #read<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    const run = async (): Promise<T> => {
      await this.#ensureReady();
      try {
        return await fn();
      } catch (error) {
        throw toHoldfastError(error);
      }
    };
    return this.#track(run());
  }

  /**
   * A one-round-trip path: its answer published and the sweep timer re-armed, or null (take the
   * full path). A root whose lean path just found something in the way (waiters, holders) is
   * "contended" for CONTENDED_MS: acquires under it go straight to the full path, and releases
   * under one root try the one-CALL hand-off (`leanHandoff`), so a hand-off costs one round trip,
   * not three. A root where that hand-off found something it can't decide (`marks` is then
   * `#unhandable`) sends releases to the full path for CONTENDED_MS too.
   */
  async #lean<T>(
    signal: AbortSignal | undefined, roots: string[], fn: () => Promise<LeanAnswer<T> | null>, marks = this.#contention,
  ): Promise<LeanAnswer<T> | null> {
    const answer = await this.#read(signal, fn);
    if (answer === null) {
      const until = performance.now() + CONTENDED_MS;
      for (const root of roots) marks.set(root, until);
      if (marks.size > REMEMBERED) marks.delete(marks.keys().next().value!);
      return null;
    }
    this.#publish(answer.changes);
    this.#due.arm(answer.nextDue, answer.now);
    return answer;
  }

  /** Roots whose hf_roots row exists (an acquire under them completed): the lean acquire creates no row for them. */
  #sawRoots(roots: readonly string[]): void {
    if (this.#rootsSeen.size + roots.length > REMEMBERED) this.#rootsSeen.clear();
    for (const root of roots) this.#rootsSeen.add(root);
  }

  #contended(roots: readonly string[], marks = this.#contention): boolean {
    const now = performance.now();
    return roots.some((root) => (marks.get(root) ?? 0) > now);
  }

  #publish(changes: readonly StoreChange[]): void {
    for (const change of changes) {
      for (const id of change.granted) {
        this.#recent.add(id);
        this.#remember(id, rootsOf(change.keys.map((key) => ({ key, mode: 'exclusive', limit: null }))));
        this.#unqueue(id);
      }
      this.#listeners.emit(change);
    }
  }


  #onOtherGrant(change: StoreChange): void {
    if (this.#closed || !change.granted.every((id) => this.#recent.add(id))) return;
    for (const id of change.granted) this.#unqueue(id);
    this.#listeners.emit(change);
  }

  #queue(ticket: string, waitMs: number, waiterTtlMs: number, changeId: number): void {
    this.#queued.set(ticket, performance.now() + waitMs + waiterTtlMs + 1000);
    this.#watcher.start(changeId);
  }

  #unqueue(ticket: string): void {
    if (!this.#queued.delete(ticket) && this.#queued.size === 0) return;
    const now = performance.now();
    for (const [id, until] of this.#queued) if (until < now) this.#queued.delete(id);
    if (this.#queued.size === 0) this.#watcher.stop();
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    const roots = rootsOf(request.resources);
    this.#remember(request.id, roots);
    if (request.requestId === null && !this.#contended(roots)) {
      const ensure = roots.some((root) => !this.#rootsSeen.has(root));
      const lean = await this.#lean(options.signal, roots, () => leanAcquire(this.#pool, request, roots, ensure));
      if (lean !== null) {
        this.#sawRoots(roots);
        return { status: 'granted', lease: lean.value, now: lean.now };
      }
    }
    const { value, changeId } = await this.#write({
      roots, ids: [request.id], idempotent: false,
      request: request.requestId === null ? undefined : { owner: request.owner, requestId: request.requestId },
      run: (s) => ops.acquire(s, request, options.waitMs, options.waiterTtlMs),
    }, options.signal);
    this.#sawRoots(roots);
    if (value.status === 'queued') {
      this.#remember(value.ticket, roots);
      this.#queue(value.ticket, options.waitMs, options.waiterTtlMs, changeId);
    } else if (value.status === 'granted') {
      this.#remember(value.lease.id, rootsOf(value.lease.resources));
    }
    return value;
  }

  #byId<T>(id: string, idempotent: boolean, run: (s: SnapshotState) => ops.Result<T>): OperationSpec<T> {
    return { roots: this.#roots.get(id) ?? [], ids: [id], idempotent, run };
  }

  async poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    const roots = this.#roots.get(ticket);
    if (roots !== undefined && roots.length > 0) {
      const lean = await this.#read(options.signal, () => leanPoll(this.#pool, ticket, roots));
      if (lean !== null) {
        if (lean.status !== 'queued') this.#unqueue(ticket);
        return lean;
      }
    }
    const { value } = await this.#write(this.#byId(ticket, true, (s) => ops.poll(s, ticket)), options.signal);
    if (value.status !== 'queued') this.#unqueue(ticket);
    return value;
  }

  async cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    const { value } = await this.#write(this.#byId(ticket, false, (s) => ops.cancel(s, ticket, options.by)), options.signal);
    this.#unqueue(ticket);
    return value;
  }

  async renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    const roots = this.#roots.get(leaseId);
    if (roots !== undefined && roots.length > 0) {
      const lean = await this.#lean(options.signal, roots, () => leanRenew(this.#pool, leaseId, ttlMs, roots));
      if (lean !== null) return { ...lean.value, now: lean.now };
    }
    return (await this.#write(this.#byId(leaseId, true, (s) => ops.renew(s, leaseId, ttlMs)), options.signal)).value;
  }

  async release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    const roots = this.#roots.get(leaseId);
    // The lean release records the owner as who ended it; one by someone else takes the full path.
    if (options.by === undefined && roots !== undefined && roots.length > 0) {
      let lean: LeanAnswer<true> | null = null;
      if (!this.#contended(roots)) lean = await this.#lean(options.signal, roots, () => leanRelease(this.#pool, leaseId, roots));
      else if (roots.length === 1 && !this.#contended(roots, this.#unhandable)) {
        lean = await this.#lean(options.signal, roots, () => leanHandoff(this.#pool, leaseId, roots[0]!, this.#origin), this.#unhandable);
      }
      if (lean !== null) return lean.value;
    }
    return (await this.#write(this.#byId(leaseId, false, (s) => ops.release(s, leaseId, options.by)), options.signal)).value;
  }

  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    return this.#read(options.signal, async () => {
      const [found] = await this.#pool.query<RowDataPacket[]>(sql.GET_LEASE, [leaseId]);
      const row = found[0];
      return row === undefined ? null : toLease(row as Row);
    });
  }

  async releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    const roots = options.key === undefined ? [] : [rootOf(options.key)];
    const spec: OperationSpec<number> = { roots, owner, idempotent: false, run: (s) => ops.releaseOwner(s, owner, options.key, options.by) };
    return (await this.#write(spec, options.signal)).value;
  }

  async forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    const spec: OperationSpec<number> = { roots: [rootOf(key)], idempotent: false, run: (s) => ops.forceRelease(s, key, options.by) };
    return (await this.#write(spec, options.signal)).value;
  }

  async list(options: ListOptions = {}): Promise<LockTable> {
    return this.#read(options.signal, async () => {
      const [results] = await this.#pool.query([sql.SESSION, ...sql.LIST].join(';\n'));
      const [, now, leases, waiters] = results as unknown as Row[][];
      const state = new SnapshotState({
        now: Number(now![0]!['now']), locked: ALL_ROOTS, leases: leases!.map(toLease), ended: new Set(),
        waiters: waiters!.map(toWaiter), delays: [],
      });
      return ops.list(state, options.prefix ?? '');
    });
  }

  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    return this.#read(options.signal, async () => {
      const limit = Math.max(0, query.limit ?? DEFAULT_HISTORY_PAGE);
      const beforeId = query.beforeId ?? Number.MAX_SAFE_INTEGER;
      const owner = query.owner ?? null;
      const pattern = query.key === undefined ? null : query.key.replace(/[|%_]/g, (c) => `|${c}`);
      const [found] = await this.#pool.query<RowDataPacket[]>(sql.HISTORY, [owner, owner, pattern, pattern, Math.ceil(beforeId / 2), limit]);
      const rows = (found as Row[]).filter((row) => query.key === undefined || (JSON.parse(String(row['resources'])) as Array<{ key: string }>).some((r) => r.key === query.key));
      return toHistory(rows, beforeId, limit);
    });
  }

  async sweep(options: CallOptions = {}): Promise<number | null> {
    const roots = await this.#read(options.signal, async () => {
      const [found] = await this.#pool.query<RowDataPacket[]>(sql.DUE_ROOTS, [SWEEP_BATCH, SWEEP_BATCH, SWEEP_BATCH, SWEEP_BATCH]);
      return (found as Row[]).map((row) => Buffer.isBuffer(row['root']) ? row['root'].toString('utf8') : String(row['root']));
    });
    let nextDue: number | null | undefined;
    if (roots.length > 0) {
      nextDue = (await this.#write({ roots, idempotent: true, readNextDue: true, run: (s) => ops.sweep(s) }, options.signal)).nextDue;
    }
    await this.#prune().catch(() => {});
    if (nextDue === undefined) {
      const row = await this.#read(options.signal, async () => {
        const [found] = await this.#pool.query<RowDataPacket[]>(sql.NEXT_DUE);
        return (found as Row[])[0];
      });
      nextDue = nextDueOf(row);
      this.#due.arm(nextDue, Number(row?.['now']));
    }
    return nextDue;
  }

  /** Bounds the history (ended lease rows) and the change log. */
  async #prune(): Promise<void> {
    const [max] = await this.#pool.query<RowDataPacket[]>(sql.MAX_FENCE);
    const below = Number((max as Row[])[0]?.['fence'] ?? 0) - this.#options.historyLimit;
    if (below > 0) await this.#pool.query(sql.PRUNE_HISTORY, [below, PRUNE_BATCH]);
    await this.#pool.query(sql.PRUNE_CHANGES, [CHANGES_KEPT_MS, PRUNE_BATCH]);
  }

  watch(listener: (change: StoreChange) => void): () => void {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#due.stop();
    await this.#watcher.close();
    await Promise.allSettled([...this.#pending, this.#sweeping]);
    await Promise.allSettled([...this.#tx.pending]);
    this.#listeners.clear();
    await this.#pool.end().catch(() => {});
  }
}

/** Opens the `mysql://` store. Migrations run in the background; the first operation waits for them. */
export function createMysqlStore(url: string, options: MysqlStoreOptions = {}): MysqlStore {
  return new MysqlStore(url, options);
}
