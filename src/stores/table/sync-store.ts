/**
 * A `LockStore` over a synchronous `TableState`: runs each operation of `operations.ts` inside the
 * store's transaction, publishes the changes after commit, and keeps a timer at the next due
 * expiry so that expiries hand off without anyone polling. Memory and SQLite build on it.
 *
 * Group commit (a backend with `savepoint`, SQLite on a file): the calls made during one turn of
 * the event loop are queued and run at its end (`setImmediate`, no timer) in one write
 * transaction, each in its own savepoint, so that one commit (one fsync with `synchronous=FULL`)
 * serves all of them. Each call keeps its own outcome and error: a call that throws rolls back
 * its savepoint only. Calls run in the order they were made (reads queued behind pending writes
 * too), and their changes are published in that order after the commit. A failed commit fails
 * every call of the batch with STORE_UNAVAILABLE. A lone caller waits for no one: its batch is
 * itself, sent at the end of the turn it called in.
 */
import { HoldfastError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import { DueTimer } from '../due-timer.js';
import { offerImmediateCalls } from '../store.js';
import * as ops from './operations.js';
import type { TableState } from './state.js';

export interface SyncTableBackend {
  readonly info: StoreInfo;
  readonly state: TableState;
  /** Runs `fn` atomically (one write transaction); rolls back when it throws. */
  transact<T>(fn: () => T): T;
  /** Runs `fn` for reading. */
  read<T>(fn: () => T): T;
  /**
   * With group commit: runs `fn` inside the current `transact` as a savepoint, rolled back alone
   * when it throws. Without (memory: nothing to commit), each call runs at once on its own.
   */
  savepoint?: (<T>(fn: () => T) => T) | undefined;
  /**
   * Operations run on `state` directly: there is no transaction to open or commit, and
   * `transact(fn)` is `fn()` (memory). Saves a closure and an array per call. @default false
   */
  direct?: boolean | undefined;
  close(): void;
}

/** A call waiting for the end of the turn. */
interface Queued {
  signal: AbortSignal | undefined;
  /** A write (an operation of `operations.ts`) or a read. */
  write: ((state: TableState) => ops.Result<unknown>) | null;
  read: ((state: TableState) => unknown) | null;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export class SyncTableStore implements LockStore {
  readonly info: StoreInfo;
  readonly #backend: SyncTableBackend;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  /** Settles expiries and dead waiters on time: one unref'd timer at the next due time. */
  readonly #due = new DueTimer({
    enabled: true,
    overdueMs: 1,
    // Never throw from a timer; the next operation settles again.
    fire: () => void this.#run(undefined, (state) => ops.sweep(state)).catch(() => {}),
  });
  #closed = false;
  /** Calls of this turn, run together at its end (group commit only). */
  #queue: Queued[] = [];
  #flushing: NodeJS.Immediate | null = null;

  constructor(backend: SyncTableBackend) {
    this.#backend = backend;
    this.info = backend.info;
    // Without group commit every call runs at once: acquire and release are offered synchronously too.
    if (backend.savepoint === undefined) {
      offerImmediateCalls(this, {
        acquire: (request, options) => this.#runNow(options.signal, acquireIn, request, options),
        release: (leaseId, options = {}) => this.#runNow(options.signal, releaseIn, leaseId, options),
      });
    }
  }

  /** Runs one operation (now, or with group commit at the end of the turn) and answers its value. */
  #run<T>(signal: AbortSignal | undefined, fn: (state: TableState) => ops.Result<T>): Promise<T> {
    if (this.#backend.savepoint === undefined) {
      try {
        return Promise.resolve(this.#runNow(signal, runIn, fn, undefined));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#enqueue(signal, fn as (state: TableState) => ops.Result<unknown>, null) as Promise<T>;
  }

  /**
   * Runs `op(state, a, b)` in its own transaction, publishes its changes, re-arms the expiry
   * timer. The operation and its two arguments come apart so that the hot calls make no closure.
   */
  #runNow<A, B, T>(signal: AbortSignal | undefined, op: (state: TableState, a: A, b: B) => ops.Result<T>, a: A, b: B): T {
    this.#check(signal);
    const backend = this.#backend;
    let result: ops.Result<T>;
    let due: number | null;
    try {
      // The next due time is read in the same transaction, not in another one afterwards.
      if (backend.direct === true) {
        result = op(backend.state, a, b);
        due = backend.state.nextDue();
      } else {
        [result, due] = backend.transact(() => {
          const value = op(backend.state, a, b);
          return [value, backend.state.nextDue()] as const;
        });
      }
    } catch (error) {
      throw unavailable(error);
    }
    this.#publish(result.changes);
    this.#due.arm(due, result.now);
    if (result.error) throw result.error;
    return result.value;
  }

  #read<T>(signal: AbortSignal | undefined, fn: (state: TableState) => T): Promise<T> {
    // Behind writes of this turn that were called before it: answered in call order.
    if (this.#queue.length > 0) return this.#enqueue(signal, null, fn) as Promise<T>;
    try {
      this.#check(signal);
      return Promise.resolve(this.#backend.read(() => fn(this.#backend.state)));
    } catch (error) {
      return Promise.reject(unavailable(error));
    }
  }

  #check(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
  }

  #enqueue(
    signal: AbortSignal | undefined, write: ((state: TableState) => ops.Result<unknown>) | null, read: ((state: TableState) => unknown) | null,
  ): Promise<unknown> {
    try {
      this.#check(signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ signal, write, read, resolve, reject });
      this.#flushing ??= setImmediate(this.#flush);
    });
  }

  /** Runs the calls of the turn in one transaction, a savepoint each; then publishes and answers them in order. */
  readonly #flush = (): void => {
    this.#flushing = null;
    const batch = this.#queue;
    this.#queue = [];
    const outcomes: Array<{ ok: true; value: unknown; result: ops.Result<unknown> | null } | { ok: false; error: unknown }> = [];
    let due: number | null = null;
    let now = 0;
    try {
      if (this.#closed) throw new StoreUnavailableError('the store is closed');
      const savepoint = this.#backend.savepoint!;
      const state = this.#backend.state;
      due = this.#backend.transact(() => {
        for (const call of batch) {
          if (call.signal?.aborted) {
            outcomes.push({ ok: false, error: call.signal.reason });
            continue;
          }
          try {
            if (call.write !== null) {
              const result = savepoint(() => call.write!(state));
              now = result.now;
              outcomes.push({ ok: true, value: result.value, result });
            } else {
              outcomes.push({ ok: true, value: call.read!(state), result: null });
            }
          } catch (error) {
            outcomes.push({ ok: false, error: unavailable(error) });
          }
        }
        return state.nextDue();
      });
    } catch (error) {
      // The commit (or the transaction's start) failed: nothing of the batch happened.
      const failure = unavailable(error);
      for (const call of batch) call.reject(failure);
      return;
    }
    batch.forEach((call, i) => {
      const outcome = outcomes[i]!;
      if (!outcome.ok) return call.reject(outcome.error);
      if (outcome.result !== null) this.#publish(outcome.result.changes);
      if (outcome.result?.error) call.reject(outcome.result.error);
      else call.resolve(outcome.value);
    });
    if (now > 0) this.#due.arm(due, now);
  };

  #publish(changes: StoreChange[]): void {
    for (const change of changes) {
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch {
          // A listener's failure is its own; it never breaks the store.
        }
      }
    }
  }

  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    return this.#run(options.signal, acquireOp(request, options));
  }
  poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    return this.#run(options.signal, (s) => ops.poll(s, ticket));
  }
  keepAlive(tickets: readonly string[], options: CallOptions = {}): Promise<string[]> {
    return this.#run(options.signal, (s) => ops.keepAlive(s, tickets));
  }
  cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    return this.#run(options.signal, (s) => ops.cancel(s, ticket, options.by));
  }
  renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return this.#run(options.signal, (s) => ops.renew(s, leaseId, ttlMs));
  }
  release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    return this.#run(options.signal, releaseOp(leaseId, options));
  }
  get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    return this.#read(options.signal, (s) => ops.get(s, leaseId));
  }
  releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return this.#run(options.signal, (s) => ops.releaseOwner(s, owner, options.key, options.by));
  }
  forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return this.#run(options.signal, (s) => ops.forceRelease(s, key, options.by));
  }
  list(options: ListOptions = {}): Promise<LockTable> {
    return this.#read(options.signal, (s) => ops.list(s, options.prefix ?? ''));
  }
  history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    return this.#read(options.signal, (s) => s.history(query));
  }
  sweep(options: CallOptions = {}): Promise<number | null> {
    return this.#run(options.signal, (s) => ops.sweep(s));
  }
  watch(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    // Calls already made are answered before the store closes.
    if (this.#flushing !== null) {
      clearImmediate(this.#flushing);
      this.#flush();
    }
    this.#closed = true;
    this.#due.stop();
    this.#listeners.clear();
    this.#backend.close();
  }
}

/** The operations behind acquire and release, shared by the async calls and the immediate ones. */
const acquireIn = (s: TableState, request: LockRequest, options: AcquireOptions): ops.Result<AcquireOutcome> =>
  ops.acquire(s, request, options.waitMs, options.waiterTtlMs);
const releaseIn = (s: TableState, leaseId: string, options: EndOptions): ops.Result<boolean> => ops.release(s, leaseId, options.by);
const runIn = <T>(s: TableState, fn: (state: TableState) => ops.Result<T>): ops.Result<T> => fn(s);
/** The same, as one-argument operations for the group-commit queue. */
const acquireOp = (request: LockRequest, options: AcquireOptions) => (s: TableState): ops.Result<AcquireOutcome> => acquireIn(s, request, options);
const releaseOp = (leaseId: string, options: EndOptions) => (s: TableState): ops.Result<boolean> => releaseIn(s, leaseId, options);

/** A database's failure as STORE_UNAVAILABLE (the store's own errors pass through). */
function unavailable(error: unknown): unknown {
  if (error instanceof HoldfastError) return error;
  return new StoreUnavailableError(error instanceof Error ? error.message : String(error), { cause: error });
}
