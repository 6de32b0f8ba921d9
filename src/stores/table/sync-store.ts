/**
 * A `LockStore` over a synchronous `TableState`: runs each operation of `operations.ts` inside the
 * store's transaction, publishes the changes after commit, and keeps a timer at the next due
 * expiry so that expiries hand off without anyone polling. Memory and SQLite build on it.
 */
import { HoldfastError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import * as ops from './operations.js';
import type { TableState } from './state.js';

export interface SyncTableBackend {
  readonly info: StoreInfo;
  readonly state: TableState;
  /** Runs `fn` atomically (one write transaction); rolls back when it throws. */
  transact<T>(fn: () => T): T;
  /** Runs `fn` for reading. */
  read<T>(fn: () => T): T;
  close(): void;
}

export class SyncTableStore implements LockStore {
  readonly info: StoreInfo;
  readonly #backend: SyncTableBackend;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #closed = false;

  constructor(backend: SyncTableBackend) {
    this.#backend = backend;
    this.info = backend.info;
  }

  /** Runs one operation, publishes its changes, re-arms the expiry timer. */
  #run<T>(signal: AbortSignal | undefined, fn: (state: TableState) => ops.Result<T>): T {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    let result: ops.Result<T>;
    let due: number | null;
    try {
      // The next due time is read in the same transaction, not in another one afterwards.
      [result, due] = this.#backend.transact(() => {
        const value = fn(this.#backend.state);
        return [value, this.#backend.state.nextDue()] as const;
      });
    } catch (error) {
      if (error instanceof HoldfastError) throw error;
      throw new StoreUnavailableError(error instanceof Error ? error.message : String(error), { cause: error });
    }
    this.#publish(result.changes);
    this.#arm(due, result.now);
    if (result.error) throw result.error;
    return result.value;
  }

  #read<T>(signal: AbortSignal | undefined, fn: (state: TableState) => T): T {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    try {
      return this.#backend.read(() => fn(this.#backend.state));
    } catch (error) {
      if (error instanceof HoldfastError) throw error;
      throw new StoreUnavailableError(error instanceof Error ? error.message : String(error), { cause: error });
    }
  }

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

  /** Keeps one unref'd timer at the next due time, so expiries and dead waiters are settled on time. */
  #arm(due: number | null, now: number): void {
    if (this.#closed || due === null) return;
    if (this.#timer !== null && this.#timerAt <= due) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = due;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      try {
        this.#run(undefined, (state) => ops.sweep(state));
      } catch {
        // Never throw from a timer; the next operation settles again.
      }
    }, Math.min(Math.max(0, due - now) + 1, 2_147_000_000));
    this.#timer.unref();
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    return this.#run(options.signal, (s) => ops.acquire(s, request, options.waitMs, options.waiterTtlMs));
  }
  async poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    return this.#run(options.signal, (s) => ops.poll(s, ticket));
  }
  async cancel(ticket: string, options: CallOptions = {}): Promise<boolean> {
    return this.#run(options.signal, (s) => ops.cancel(s, ticket));
  }
  async renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return this.#run(options.signal, (s) => ops.renew(s, leaseId, ttlMs));
  }
  async release(leaseId: string, options: CallOptions = {}): Promise<boolean> {
    return this.#run(options.signal, (s) => ops.release(s, leaseId));
  }
  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    return this.#read(options.signal, (s) => ops.get(s, leaseId));
  }
  async releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return this.#run(options.signal, (s) => ops.releaseOwner(s, owner, options.key, options.by));
  }
  async forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return this.#run(options.signal, (s) => ops.forceRelease(s, key, options.by));
  }
  async list(options: ListOptions = {}): Promise<LockTable> {
    return this.#read(options.signal, (s) => ops.list(s, options.prefix ?? ''));
  }
  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    return this.#read(options.signal, (s) => s.history(query));
  }
  async sweep(options: CallOptions = {}): Promise<number | null> {
    return this.#run(options.signal, (s) => ops.sweep(s));
  }
  watch(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#listeners.clear();
    this.#backend.close();
  }
}
