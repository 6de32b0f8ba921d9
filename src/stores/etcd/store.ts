/**
 * `etcd://host:2379[,host2:2379,...][/prefix]`: holdfast on an etcd cluster (docs/etcd.md).
 *
 * Every operation is the shared lock-table algorithm (`../table/operations.ts`) run on this
 * process's copy of the namespace's table (`EtcdTable`), committed as ONE etcd transaction whose
 * only compare is the meta record's mod revision. The transaction commits only if nobody wrote
 * the namespace since the copy was read; otherwise its failure branch returns the current table
 * and the operation runs again on that. So every decision (conflicts by key path, shared limits,
 * FIFO across keys, lock-delay, fences, request ids) is made on a state that etcd proves current
 * at the commit; the cluster's consensus, not a process, serializes them.
 *
 * Operations submitted while a transaction is in flight are run together in the next one (group
 * commit): one process's operations cost one round trip per batch. Read-only operations are
 * committed as a compare-only transaction (a linearizable read), or need none when their copy
 * was read in the same attempt.
 *
 * A call that may have been applied (a timeout, a leader change, a dropped connection) is never
 * resent as it was: the copy is dropped, the table read again, and the operation decided again
 * on it (an acquire whose lease or ticket is already there answers with it).
 *
 * Push: each transaction writes its changes into the meta record; every store object watches
 * that key and publishes other processes' changes to its listeners (wake-ups are complete), and
 * arms its sweep timer at the next due time the record carries.
 */
import { randomBytes } from 'node:crypto';
import { HoldfastError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import * as ops from '../table/operations.js';
import { EtcdCallError, EtcdClient, prefixEnd, WatchCancelledError, type KeyValue, type TxnOp } from './client.js';
import { readHistory } from './history.js';
import { decodeMeta, ENDED_TTL_S, Layout } from './layout.js';
import { resolveEtcdOptions, type EtcdStoreOptions, type ResolvedEtcdOptions } from './options.js';
import { EtcdTable } from './table.js';

/** At most this many operations per transaction (each writes a few keys; etcd caps ops per txn). */
const MAX_BATCH = 32;
const WATCH_RETRY_MS = 100;

interface Pending {
  /** Runs the operation on the table; `uncertain`: an earlier attempt may have been applied. */
  run(table: EtcdTable, uncertain: boolean): ops.Result<unknown>;
  /** Lease ids whose ended marker the operation may need (renew of a lease the copy lacks). */
  endedIds: string[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
  uncertain: boolean;
}

/** Not unref'd: an operation someone awaits keeps the process alive while it backs off, as its I/O would. */
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * This process's clock, ms since the epoch: the monotonic clock anchored at the epoch once (so
 * neither a changed `Date.now` nor a wall-clock step moves it). `EtcdTable.begin` keeps the store
 * time from ever running behind the last write's.
 */
const processClock = (): number => Math.floor(performance.timeOrigin + performance.now());

export class EtcdStore implements LockStore {
  readonly info: StoreInfo = { kind: 'etcd', durable: true, wakeups: 'complete' };
  readonly #options: ResolvedEtcdOptions;
  readonly #client: EtcdClient;
  readonly #layout: Layout;
  /** Written into the meta record, so this object's watch skips its own changes. */
  readonly #origin = randomBytes(8).toString('hex');
  readonly #listeners = new Set<(change: StoreChange) => void>();
  #table: EtcdTable | null = null;
  #pending: Pending[] = [];
  #draining = false;
  #closed = false;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #stopWatch: (() => void) | null = null;
  /** The revision after which the watch has delivered everything. */
  #watched = 0;
  /** The etcd lease that ended-id keys are put on, and when it was granted (local ms). */
  #endedLease: { id: string; at: number } | null = null;

  private constructor(options: ResolvedEtcdOptions) {
    this.#options = options;
    this.#layout = new Layout(options.prefix);
    this.#client = new EtcdClient({ endpoints: options.endpoints, requestTimeoutMs: options.requestTimeoutMs });
  }

  static async open(url: string, options: EtcdStoreOptions = {}): Promise<EtcdStore> {
    const store = new EtcdStore(resolveEtcdOptions(url, options));
    try {
      const revision = await store.#load([], undefined, performance.now() + store.#options.operationTimeoutMs);
      store.#watched = revision;
      store.#watch();
      const due = store.#table?.nextDue() ?? null;
      if (due !== null) store.#arm(due, store.#table!.meta.clock);
      return store;
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  /** The ranges a transaction's failure branch (or a read) returns: the table, the meta, ended ids. */
  #reads(endedIds: string[]): TxnOp[] {
    return [
      { range: { key: this.#layout.table, rangeEnd: prefixEnd(this.#layout.table) } },
      { range: { key: this.#layout.meta } },
      ...endedIds.map((id) => ({ range: { key: this.#layout.ended(id) } })),
    ];
  }

  #fromRanges(ranges: KeyValue[][]): { table: EtcdTable; ended: string[] } {
    const table = EtcdTable.fromRead(this.#layout, ranges[0] ?? [], ranges[1] ?? []);
    const ended = ranges.slice(2).flat().map((kv) => kv.key.slice(this.#layout.ended('').length));
    return { table, ended };
  }

  /** Reads the table (a transaction whose compare always fails); returns the revision read at. */
  async #load(endedIds: string[], signal: AbortSignal | undefined, deadline: number): Promise<number> {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      try {
        const result = await this.#client.txn([{ key: this.#layout.meta, target: 'mod', equals: -1 }], [], this.#reads(endedIds), signal);
        const { table, ended } = this.#fromRanges(result.ranges);
        this.#table = table;
        this.#endedFound = ended;
        return result.revision;
      } catch (error) {
        if (!(error instanceof EtcdCallError) || performance.now() + delay > deadline) throw unavailable(error);
        await sleep(delay);
      }
    }
  }

  /** Ended ids found by the last read (kept for the attempt that follows it). */
  #endedFound: string[] = [];

  #submit<T>(signal: AbortSignal | undefined, endedIds: string[], run: (table: EtcdTable, uncertain: boolean) => ops.Result<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('the store is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ run, endedIds, resolve: resolve as (value: unknown) => void, reject, signal, uncertain: false });
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#pending.length > 0 && !this.#closed) {
        const batch = this.#pending.splice(0, MAX_BATCH);
        try {
          await this.#runBatch(batch);
        } catch (error) {
          for (const op of batch) op.reject(unavailable(error));
        }
      }
    } finally {
      this.#draining = false;
    }
    if (this.#closed) for (const op of this.#pending.splice(0)) op.reject(new StoreUnavailableError('the store is closed'));
  }

  async #runBatch(batch: Pending[]): Promise<void> {
    const deadline = performance.now() + this.#options.operationTimeoutMs;
    let live = batch;
    // The copy was read in this batch (by a read or a failed transaction's failure branch): its
    // revision is later than every operation's submission, so a read-only batch needs no check.
    let fresh = false;
    for (let attempt = 0; ; attempt++) {
      live = live.filter((op) => {
        if (!op.signal?.aborted || op.uncertain) return true;
        op.reject(op.signal.reason);
        return false;
      });
      if (live.length === 0) return;
      if (this.#closed) throw new StoreUnavailableError('the store is closed');
      if (performance.now() > deadline) throw new StoreUnavailableError(`no etcd transaction committed within ${this.#options.operationTimeoutMs} ms`);

      const endedIds = [...new Set(live.flatMap((op) => op.endedIds))];
      const known = this.#table;
      if (known === null || endedIds.some((id) => !known.lease(id) && !known.endedLease(id))) {
        await this.#load(endedIds, undefined, deadline);
        fresh = true;
      }
      const table = this.#table!;
      table.begin(processClock(), fresh ? this.#endedFound : []);

      // Run every operation of the batch on the copy, in order.
      const results: ops.Result<unknown>[] = [];
      let thrower = -1;
      for (let i = 0; i < live.length; i++) {
        try {
          results.push(live[i]!.run(table, live[i]!.uncertain));
        } catch (error) {
          live[i]!.reject(error instanceof HoldfastError ? error : unavailable(error));
          thrower = i;
          break;
        }
      }
      if (thrower !== -1) {
        // The copy holds part of a failed operation: drop it and run the others again.
        this.#table = null;
        live = live.filter((_, i) => i !== thrower);
        continue;
      }
      const changes = results.flatMap((r) => r.changes);

      try {
        if (!table.hasWrites) {
          if (!fresh) {
            // Read-only: valid if nobody wrote since the copy was read.
            const check = await this.#client.txn([{ key: this.#layout.meta, target: 'mod', equals: table.revision }], [], this.#reads(endedIds));
            if (!check.succeeded) {
              this.#adopt(check.ranges);
              fresh = true;
              continue;
            }
          }
          this.#settle(live, results, changes, table);
          return;
        }
        table.meta.changes = changes;
        table.meta.nextDue = table.nextDue();
        table.meta.origin = this.#origin;
        const endedLease = await this.#endedLeaseId();
        const result = await this.#client.txn(
          [{ key: this.#layout.meta, target: 'mod', equals: table.revision }],
          table.ops(endedLease, this.#options.historyLimit),
          this.#reads(endedIds),
        );
        if (!result.succeeded) {
          this.#adopt(result.ranges);
          fresh = true;
          // Contention with other clients: a little jitter after a few rounds avoids lockstep.
          if (attempt >= 3) await sleep(Math.random() * Math.min(50, attempt * 5));
          continue;
        }
        table.committed(result.revision);
        this.#settle(live, results, changes, table);
        return;
      } catch (error) {
        if (!(error instanceof EtcdCallError)) throw error;
        this.#table = null;
        if (/lease not found/i.test(error.message)) this.#endedLease = null;
        if (error.maybeApplied) for (const op of live) op.uncertain = true;
        await sleep(Math.min(500, 20 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  #adopt(ranges: KeyValue[][]): void {
    const { table, ended } = this.#fromRanges(ranges);
    this.#table = table;
    this.#endedFound = ended;
  }

  /** After a commit (or a validated read): publish, re-arm, answer each operation. */
  #settle(live: Pending[], results: ops.Result<unknown>[], changes: StoreChange[], table: EtcdTable): void {
    this.#publish(changes);
    const due = table.nextDue();
    if (due !== null) this.#arm(due, table.now());
    live.forEach((op, i) => {
      const result = results[i]!;
      if (result.error) op.reject(result.error);
      else op.resolve(result.value);
    });
  }

  async #endedLeaseId(): Promise<string> {
    const lease = this.#endedLease;
    if (lease !== null && performance.now() - lease.at < (ENDED_TTL_S * 1000) / 2) return lease.id;
    const at = performance.now();
    const id = await this.#client.grantLease(ENDED_TTL_S);
    this.#endedLease = { id, at };
    return id;
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

  /** One unref'd timer at the next due time (store time `due`, the clock at `now`). */
  #arm(due: number, now: number): void {
    if (this.#closed || !this.#options.autoSweep) return;
    const at = performance.now() + Math.max(0, due - now);
    if (this.#timer !== null && this.#timerAt <= at) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.sweep().catch(() => {
        // Never throw from a timer; the next operation settles again.
      });
    }, Math.min(Math.max(0, due - now) + 1, 2_147_000_000));
    this.#timer.unref();
  }

  /** Follows the meta record: other processes' changes are published, their due times armed. */
  #watch(): void {
    if (this.#closed) return;
    this.#stopWatch = this.#client.watch(
      this.#layout.meta,
      this.#watched + 1,
      (events, revision) => {
        for (const { type, kv } of events) {
          this.#watched = Math.max(this.#watched, kv.modRevision);
          if (type !== 'put') continue;
          const meta = decodeMeta(kv.value);
          if (meta.origin === this.#origin) continue;
          this.#publish(meta.changes);
          if (meta.nextDue !== null) this.#arm(meta.nextDue, meta.clock);
        }
        // A progress notice: nothing below `revision` is left to deliver.
        if (events.length === 0) this.#watched = Math.max(this.#watched, revision);
      },
      (error) => {
        this.#stopWatch = null;
        if (this.#closed) return;
        // Compacted away: changes in between are lost (waiters' heartbeats cover them); go on from now.
        if (error instanceof WatchCancelledError && error.compactRevision > 0) this.#watched = error.compactRevision - 1;
        setTimeout(() => this.#watch(), WATCH_RETRY_MS).unref();
      },
    );
  }

  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    return this.#submit(options.signal, [], (t, uncertain) => {
      if (uncertain) {
        // An earlier attempt may have been applied: its lease or ticket answers.
        const lease = t.lease(request.id);
        if (lease && lease.owner === request.owner) return { value: { status: 'granted', lease, now: t.now() } as AcquireOutcome, changes: [], now: t.now() };
        if (t.waiter(request.id)) {
          const polled = ops.poll(t, request.id);
          const value = polled.value;
          if (value.status === 'queued') return { ...polled, value: { ...value, ticket: request.id } };
          if (value.status === 'granted') return { ...polled, value };
        }
      }
      return ops.acquire(t, request, options.waitMs, options.waiterTtlMs);
    });
  }
  poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    return this.#submit(options.signal, [], (t) => ops.poll(t, ticket));
  }
  cancel(ticket: string, options: CallOptions = {}): Promise<boolean> {
    return this.#submit(options.signal, [], (t) => ops.cancel(t, ticket));
  }
  renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return this.#submit(options.signal, [leaseId], (t) => ops.renew(t, leaseId, ttlMs));
  }
  release(leaseId: string, options: CallOptions = {}): Promise<boolean> {
    return this.#submit(options.signal, [], (t) => ops.release(t, leaseId));
  }
  get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    return this.#submit(options.signal, [], (t) => ({ value: ops.get(t, leaseId), changes: [], now: t.now() }));
  }
  releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return this.#submit(options.signal, [], (t) => ops.releaseOwner(t, owner, options.key, options.by));
  }
  forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return this.#submit(options.signal, [], (t) => ops.forceRelease(t, key, options.by));
  }
  list(options: ListOptions = {}): Promise<LockTable> {
    return this.#submit(options.signal, [], (t) => ({ value: ops.list(t, options.prefix ?? ''), changes: [], now: t.now() }));
  }
  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    try {
      return await readHistory(this.#client, this.#layout, query, options.signal);
    } catch (error) {
      throw unavailable(error);
    }
  }
  sweep(options: CallOptions = {}): Promise<number | null> {
    return this.#submit(options.signal, [], (t) => ops.sweep(t));
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
    this.#stopWatch?.();
    this.#stopWatch = null;
    this.#listeners.clear();
    // Operations in flight finish (or fail) on their own; queued ones are refused.
    for (const op of this.#pending.splice(0)) op.reject(new StoreUnavailableError('the store is closed'));
    this.#client.close();
  }
}

function unavailable(error: unknown): Error {
  if (error instanceof HoldfastError) return error;
  if (error instanceof Error && error.name === 'AbortError') return error;
  return new StoreUnavailableError(error instanceof Error ? error.message : String(error), { cause: error });
}

export function createEtcdStore(url: string, options: EtcdStoreOptions = {}): Promise<EtcdStore> {
  return EtcdStore.open(url, options);
}
