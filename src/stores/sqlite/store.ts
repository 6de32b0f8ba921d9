/**
 * `sqlite:PATH`: the embedded, durable store. The shared lock-table algorithm runs over
 * `SqliteState` inside a `BEGIN IMMEDIATE` transaction per operation, so every operation is atomic
 * across all processes that share the file, and time is SQLite's clock.
 *
 * Wake-ups are `complete`: every change made through any store object of this process on the same
 * file (a module-level registry keyed by the file's real path) is pushed to the `watch` listeners
 * of all of them, and while a store object has tickets queued it follows the file for the grants
 * other processes make (`other-processes.ts`: a check of SQLite's data version whenever the
 * write-ahead log changes, and a read of their history events when it moved).
 *
 * The file must be on a local filesystem: WAL mode needs shared memory between the processes,
 * which network filesystems do not provide.
 */
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import Database from 'better-sqlite3';
import { HoldfastError, InvalidRequestError, StoreUnavailableError } from '../../model/errors.js';
import { typeName } from '../../model/duration.js';
import type { AcquireOptions, AcquireOutcome, CallOptions, PollOutcome, StoreChange } from '../store.js';
import type { LockRequest } from '../../model/types.js';
import { SyncTableStore, type SyncTableBackend } from '../table/sync-store.js';
import { CREATE_MIGRATIONS_TABLE, CURRENT_VERSION, LATEST_VERSION, MIGRATIONS, RECORD_MIGRATION } from './migrations.js';
import { Checkpointer } from './checkpointer.js';
import { OtherProcessChanges, type OtherProcessSource } from './other-processes.js';
import { SqliteState } from './state.js';

export interface SqliteStoreOptions {
  /**
   * SQLite's `synchronous` setting; the database always runs in WAL mode.
   *
   * - `'FULL'`: each commit is synced to disk before the call returns. A grant, and with it the
   *   fence counter, survives a power loss or an OS crash, so a fence that a resource has seen is
   *   never issued again. This is why it is the default: fencing (SPEC 3.3) must hold across
   *   restarts, and a fence counter that can go back breaks it silently.
   * - `'NORMAL'`: commits survive a crash of the process, but the last ones may be lost on a power
   *   loss or OS crash (the WAL is synced only at checkpoints). Noticeably faster writes (no fsync
   *   per commit); choose it only when fences are not used to guard external resources, or the
   *   machine cannot lose power without the whole system restarting from scratch.
   * @default 'FULL'
   */
  synchronous?: 'NORMAL' | 'FULL' | undefined;
  /**
   * How long an operation waits for another connection's write lock (SQLite `busy_timeout`)
   * before it fails with `STORE_UNAVAILABLE`. 0 to 600000 ms.
   * @default 5000
   */
  busyTimeoutMs?: number | undefined;
  /**
   * How many history events to keep (the oldest are trimmed, a few at a time every 16 events). This
   * also bounds how long an ended lease is remembered: a renew of a lease whose events were
   * pruned says NOT_FOUND rather than LEASE_LOST. 1000 to 1000000000.
   * @default 100000
   */
  historyLimit?: number | undefined;
}

export const SQLITE_DEFAULTS = Object.freeze({
  synchronous: 'FULL',
  busyTimeoutMs: 5000,
  historyLimit: 100_000,
} as const satisfies Required<SqliteStoreOptions>);

type ResolvedOptions = { -readonly [K in keyof typeof SQLITE_DEFAULTS]-?: NonNullable<SqliteStoreOptions[K]> };

const OPTION_NAMES = new Set(Object.keys(SQLITE_DEFAULTS));

function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(field, `expected an integer ${min}..${max}, got ${typeName(value)}`);
  }
  return value;
}

/** Fills in defaults and checks every option, naming the bad one. */
export function resolveSqliteOptions(options: SqliteStoreOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown option of the sqlite store');
  }
  const synchronous = options.synchronous ?? SQLITE_DEFAULTS.synchronous;
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
    throw new InvalidRequestError('options.synchronous', `expected "FULL" or "NORMAL", got ${typeName(synchronous)}`);
  }
  return {
    synchronous,
    busyTimeoutMs: integerIn(options.busyTimeoutMs ?? SQLITE_DEFAULTS.busyTimeoutMs, 'options.busyTimeoutMs', 0, 600_000),
    historyLimit: integerIn(options.historyLimit ?? SQLITE_DEFAULTS.historyLimit, 'options.historyLimit', 1000, 1_000_000_000),
  };
}

/** The fixed PRAGMA texts (PRAGMA takes no bound parameters, so the values are chosen, not pasted). */
const SYNCHRONOUS_PRAGMA = Object.freeze({ FULL: 'synchronous = FULL', NORMAL: 'synchronous = NORMAL' });

const isMemoryPath = (path: string): boolean => path === ':memory:';

/** Sleeps synchronously (opening is synchronous); used only while another process holds the file. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs `fn`, retrying while SQLite reports the file busy, for up to `timeoutMs`. */
function whileBusy<T>(timeoutMs: number, fn: () => T): T {
  const start = performance.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const busy = code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
      if (!busy || performance.now() - start > timeoutMs) throw error;
      pause(Math.min(100, 5 * 2 ** attempt));
    }
  }
}

/** Applies the migrations above the file's version in one IMMEDIATE transaction. */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    db.exec(CREATE_MIGRATIONS_TABLE);
    const current = (db.prepare(CURRENT_VERSION).get() as { version: number | null }).version ?? 0;
    if (current > LATEST_VERSION) {
      throw new Error(`the database was written by a newer holdfast (schema version ${current}; this one knows up to ${LATEST_VERSION})`);
    }
    const record = db.prepare(RECORD_MIGRATION);
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      for (const statement of migration.statements) db.exec(statement);
      record.run({ version: migration.version, name: migration.name });
    }
  }).immediate();
}

function openDatabase(path: string, options: ResolvedOptions): Database.Database {
  let db: Database.Database;
  try {
    // `timeout` is SQLite's busy_timeout: how long a statement waits for another connection's lock.
    db = new Database(path, { timeout: options.busyTimeoutMs });
  } catch (error) {
    throw unavailable(path, error);
  }
  try {
    // Switching a new file to WAL needs a moment of exclusive access; another process opening the
    // same file at that instant makes it report busy, so retry.
    const mode = whileBusy(options.busyTimeoutMs, () => db.pragma('journal_mode = WAL', { simple: true }));
    if (mode !== 'wal' && !isMemoryPath(path)) throw new Error(`cannot switch to WAL mode (journal_mode is ${String(mode)})`);
    db.pragma(SYNCHRONOUS_PRAGMA[options.synchronous]);
    db.pragma('foreign_keys = ON');
    whileBusy(options.busyTimeoutMs, () => migrate(db));
    return db;
  } catch (error) {
    db.close();
    throw unavailable(path, error);
  }
}

function unavailable(path: string, error: unknown): Error {
  if (error instanceof HoldfastError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`cannot open the SQLite database ${JSON.stringify(path)}: ${reason}`, { cause: error });
}

/** Every open store object of this process, by the real path of its file. */
const registry = new Map<string, Set<SqliteStore>>();

/** The checkpoint thread of each file this process has open, and how many store objects use it. */
const checkpointers = new Map<string, { checkpointer: Checkpointer; users: number }>();

/** The file's checkpointer (started with the first store object on it), and how to let go of it. */
function checkpointerOf(file: string, busyTimeoutMs: number): { checkpointer: Checkpointer; release: () => Promise<void> } {
  let entry = checkpointers.get(file);
  if (!entry) checkpointers.set(file, (entry = { checkpointer: new Checkpointer(file, busyTimeoutMs), users: 0 }));
  entry.users++;
  const current = entry;
  let released = false;
  return {
    checkpointer: current.checkpointer,
    release: async () => {
      if (released) return;
      released = true;
      if (--current.users > 0) return;
      if (checkpointers.get(file) === current) checkpointers.delete(file);
      await current.checkpointer.stop();
    },
  };
}

/** Written with this process's history events, so that it can tell other processes' events apart. */
const PROCESS_ORIGIN = randomUUID();

export class SqliteStore extends SyncTableStore {
  /** The file (its real path), or `:memory:`. */
  readonly file: string;
  readonly #shared: boolean;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  /** Grants by other processes, followed while tickets are queued (null: no other process can share the database). */
  readonly #others: OtherProcessChanges | null;
  #closed = false;

  /** Lets go of the file's checkpoint thread (null: a private in-memory database has none). */
  readonly #releaseCheckpointer: (() => Promise<void>) | null;

  constructor(
    backend: SyncTableBackend, file: string, shared: boolean, others: OtherProcessSource | null,
    releaseCheckpointer: (() => Promise<void>) | null = null,
  ) {
    super(backend);
    this.file = file;
    this.#releaseCheckpointer = releaseCheckpointer;
    this.#shared = shared;
    // Every commit writes the write-ahead log, so watching it tells of other processes' commits.
    this.#others = others === null ? null : new OtherProcessChanges(others, (change) => this.#deliver(change), { watchFile: `${file}-wal` });
    // Changes made through this object go to the listeners of every object on the same file.
    super.watch((change) => {
      for (const store of this.#peers()) store.#deliver(change);
    });
    if (shared) {
      let peers = registry.get(file);
      if (!peers) registry.set(file, (peers = new Set()));
      peers.add(this);
    }
    // Settle what fell due while the file was closed and arm the expiry timer.
    this.sweep().catch(() => {});
  }

  #peers(): Iterable<SqliteStore> {
    return this.#shared ? (registry.get(this.file) ?? []) : [this];
  }

  #deliver(change: StoreChange): void {
    for (const ticket of change.granted) this.#others?.forget(ticket);
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own; it never breaks the store or the other listeners.
      }
    }
  }

  override async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    // Where to start reading other processes' events, taken before a request that may queue.
    const mark = options.waitMs > 0 ? (this.#others?.mark() ?? null) : null;
    const outcome = await super.acquire(request, options);
    if (outcome.status === 'queued') this.#others?.queued(outcome.ticket, options.waiterTtlMs, mark);
    return outcome;
  }

  override async poll(ticket: string, options?: CallOptions): Promise<PollOutcome> {
    const outcome = await super.poll(ticket, options);
    if (outcome.status === 'queued') this.#others?.touch(ticket);
    else this.#others?.forget(ticket);
    return outcome;
  }

  override async cancel(ticket: string, options?: CallOptions): Promise<boolean> {
    this.#others?.forget(ticket);
    return super.cancel(ticket, options);
  }

  override watch(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#others?.stop();
    let successor: SqliteStore | undefined;
    if (this.#shared) {
      const peers = registry.get(this.file);
      peers?.delete(this);
      if (peers && peers.size === 0) registry.delete(this.file);
      successor = peers?.values().next().value;
    }
    await super.close();
    await this.#releaseCheckpointer?.();
    // This object's expiry timer is gone: let a remaining object on the file arm its own.
    successor?.sweep().catch(() => {});
  }
}

/**
 * Opens (creating and migrating if needed) the SQLite lock store at `path`, a file path or
 * `:memory:` (a private, non-durable database). Throws `INVALID_REQUEST` naming a bad option, and
 * `STORE_UNAVAILABLE` (SQLite's error as `cause`) when the file cannot be opened or migrated.
 */
export function createSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  if (typeof path !== 'string' || path.length === 0) {
    throw new InvalidRequestError('path', `expected a file path or ":memory:", got ${typeName(path)}`);
  }
  const resolved = resolveSqliteOptions(options);
  const db = openDatabase(path, resolved);
  const memory = isMemoryPath(path);
  let state: SqliteState;
  let file: string;
  try {
    state = new SqliteState(db, { historyLimit: resolved.historyLimit, origin: PROCESS_ORIGIN });
    file = memory ? path : realpathSync(path);
  } catch (error) {
    db.close();
    throw error;
  }
  // Cached reads never outlive a transaction: other connections may write in between.
  const inTransaction = <T>(fn: () => T): T => {
    state.resetCache();
    try {
      return fn();
    } finally {
      state.resetCache();
    }
  };
  const write = db.transaction((fn: () => unknown) => fn());
  const read = db.transaction((fn: () => unknown) => fn());
  // Checkpoints run on the file's checkpoint thread, not inside a caller's commit; should that
  // thread fail, SQLite's automatic checkpoint takes over again.
  let checkpoints: { checkpointer: Checkpointer; release: () => Promise<void> } | null = null;
  if (!memory) {
    try {
      checkpoints = checkpointerOf(file, resolved.busyTimeoutMs);
      db.pragma('wal_autocheckpoint = 0');
    } catch {
      checkpoints = null;
    }
  }
  let automatic = checkpoints === null;
  const committed = (): void => {
    if (checkpoints === null) return;
    checkpoints.checkpointer.committed();
    if (!automatic && checkpoints.checkpointer.failed) {
      automatic = true;
      db.pragma('wal_autocheckpoint = 1000');
    }
  };
  const backend: SyncTableBackend = {
    info: { kind: 'sqlite', durable: !memory, wakeups: 'complete' },
    state,
    transact: <T>(fn: () => T): T => {
      const value = inTransaction(() => write.immediate(fn) as T);
      committed();
      return value;
    },
    // Inside `transact` a transaction function runs as a savepoint. Reads cached by a call that
    // is rolled back must not serve the next one.
    savepoint: memory ? undefined : <T>(fn: () => T): T => inTransaction(() => write(fn) as T),
    read: <T>(fn: () => T): T => inTransaction(() => read.deferred(fn) as T),
    close: () => {
      try {
        db.pragma('optimize');
      } catch {
        // Only a hint to the query planner.
      }
      db.close();
    },
  };
  // A private in-memory database has no other connection; a file may be shared by other processes.
  return new SqliteStore(backend, file, !memory, memory ? null : state, checkpoints?.release ?? null);
}
