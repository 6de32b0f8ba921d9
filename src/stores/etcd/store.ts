/**
 * `etcd://host:2379[,host2:2379,...][/prefix]`: holdfast on an etcd cluster (docs/etcd.md).
 *
 * Every operation is the shared lock-table algorithm (`../table/operations.ts`) run on this
 * process's copy of the key roots it concerns (`EtcdTable`; a key's root is its first `/`
 * segment, and keys of different roots never conflict), committed as ONE etcd transaction that
 * compares the mod revision of every root's version record it read. It commits only if none of
 * those roots was written since the copy was read; otherwise its failure branch returns those
 * roots as they are and the operation runs again on them. So every decision (conflicts by key
 * path, shared limits, FIFO, lock-delay, request ids) is made on a state that etcd proves
 * current at the commit, while operations on other roots commit in parallel.
 *
 * Operations submitted while a transaction is in flight run together in the next one (group
 * commit). Read-only operations are committed as a compare-only transaction (a linearizable
 * read), or need none when their roots were read in the same attempt.
 *
 * A call that may have been applied (a timeout, a leader change, a dropped connection) is never
 * resent as it was: the copy is dropped, the roots read again, and the operation decided again on
 * them (an acquire whose lease or ticket is already there answers with it).
 *
 * Push: each transaction writes its changes into a version record; every store object watches
 * the version records of its namespace and publishes other processes' changes to its listeners
 * (wake-ups are complete), and arms its sweep timer at the next due time the records carry
 * (version-watch.ts). A root another process wrote is read again at once where this object
 * holds a lease, so its next release commits at the first try (refresh.ts).
 */
import { randomBytes } from 'node:crypto';
import { HoldfastError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import * as ops from '../table/operations.js';
import { EtcdCallError, EtcdClient, type KeyValue, type TxnOp } from './client.js';
import { pruneHistory, readHistory } from './history.js';
import { rangesOf, statesOf } from './reads.js';
import {
  ENDED_TTL_S, Layout, PROVISIONAL, resolve, rootOf, rootsOf,
} from './layout.js';
import { DueTimer } from '../due-timer.js';
import { resolveEtcdOptions, type EtcdStoreOptions, type ResolvedEtcdOptions } from './options.js';
import { RootRefresh } from './refresh.js';
import { EtcdTable, type RootState } from './table.js';
import { VersionWatch } from './version-watch.js';

/** At most this many operations per transaction (each writes a few keys; etcd caps ops per txn). */
const MAX_BATCH = 32;

/** What an operation reads: these roots, the roots of these ids, every root, or the roots with something due. */
type Need = { roots: string[] } | { ids: string[] } | { all: true } | { due: true };

interface Pending {
  need: Need;
  /** Runs the operation on the table; `uncertain`: an earlier attempt may have been applied. */
  run(table: EtcdTable, uncertain: boolean): ops.Result<unknown>;
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
 * time from ever running behind the last write of any root it reads.
 */
const processClock = (): number => Math.floor(performance.timeOrigin + performance.now());

/** Fixes provisional fences in an operation's answer (leases it granted in the committed transaction). */
function fixNumbers(value: unknown, revision: number): void {
  if (Array.isArray(value)) for (const item of value) fixNumbers(item, revision);
  else if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    if (typeof record['fence'] === 'number' && record['fence'] >= PROVISIONAL) record['fence'] = resolve(record['fence'], revision);
    for (const key of ['lease', 'holders']) if (key in record) fixNumbers(record[key], revision);
  }
}

export class EtcdStore implements LockStore {
  readonly info: StoreInfo = { kind: 'etcd', durable: true, wakeups: 'complete' };
  readonly #options: ResolvedEtcdOptions;
  readonly #client: EtcdClient;
  readonly #layout: Layout;
  /** Written into the version records, so this object's watch skips its own changes. */
  readonly #origin = randomBytes(8).toString('hex');
  readonly #versions: VersionWatch;
  readonly #refresh: RootRefresh;
  /** The roots read so far, as last known (checked by the compares of every transaction). */
  readonly #cache = new Map<string, RootState>();
  /** The roots of the leases and waiters in the cache, by id. */
  readonly #rootsById = new Map<string, string[]>();
  #pending: Pending[] = [];
  #draining = false;
  /** A batch is between reading the cache and copying its roots into its table (refresh.ts). */
  #preparing = false;
  #closed = false;
  /** Sweeps at the next due time this object has heard of (expiries, waiter deadlines, delays). */
  readonly #due: DueTimer;
  /** The etcd lease that ended-id keys are put on, and when it was granted (local ms). */
  #endedLease: { id: string; at: number } | null = null;
  /** History events written since the last prune. */
  #appended = 0;

  private constructor(options: ResolvedEtcdOptions) {
    this.#options = options;
    this.#layout = new Layout(options.prefix);
    this.#client = new EtcdClient({ endpoints: options.endpoints, requestTimeoutMs: options.requestTimeoutMs });
    this.#due = new DueTimer({
      enabled: options.autoSweep,
      fire: () => {
        this.sweep().catch(() => {
          // Never throw from a timer; the next operation settles again.
        });
      },
    });
    this.#refresh = new RootRefresh({
      cached: (root) => this.#cache.get(root),
      read: async (root) => (await this.#client.txn([], this.#readsOf([root]), [])).ranges,
      absorb: (root, ranges) => {
        if (!this.#preparing) this.#absorb([root], ranges);
      },
    });
    this.#versions = new VersionWatch({
      client: this.#client, layout: this.#layout, origin: this.#origin, onDue: (nextDue, clock) => this.#due.arm(nextDue, clock),
      onWritten: (root, revision, changes) => this.#refresh.written(root, revision, changes),
    });
  }

  static async open(url: string, options: EtcdStoreOptions = {}): Promise<EtcdStore> {
    const store = new EtcdStore(resolveEtcdOptions(url, options));
    try {
      const deadline = performance.now() + store.#options.operationTimeoutMs;
      const revision = await store.#retrying(deadline, async () => (await store.#client.txn([], [], [])).revision);
      if (!store.#closed) store.#versions.start(revision);
      return store;
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  /** Runs `fn` again after calls that failed, with backoff, until `deadline`. */
  async #retrying<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await fn();
      } catch (error) {
        if (!(error instanceof EtcdCallError) || performance.now() + delay > deadline) throw unavailable(error);
        await sleep(delay);
      }
    }
  }

  // ------------------------------------------------------------------------------ the cache

  #setRoot(root: string, state: RootState): void {
    const old = this.#cache.get(root);
    if (old) for (const r of [...old.leases, ...old.waiters]) this.#rootsById.delete(r.id);
    this.#cache.set(root, state);
    for (const r of [...state.leases, ...state.waiters]) this.#rootsById.set(r.id, rootsOf(r.resources));
  }

  #dropRoot(root: string): void {
    const old = this.#cache.get(root);
    if (old) for (const r of [...old.leases, ...old.waiters]) this.#rootsById.delete(r.id);
    this.#cache.delete(root);
  }

  /** The ranges that read `roots` (every root when null). */
  #readsOf(roots: readonly string[] | null): TxnOp[] {
    return rangesOf(this.#layout, roots);
  }

  /** Puts what the ranges of `#readsOf(roots)` returned into the cache; returns the roots read. */
  #absorb(roots: readonly string[] | null, ranges: KeyValue[][]): string[] {
    const states = statesOf(this.#layout, roots, ranges);
    if (roots === null) for (const root of [...this.#cache.keys()]) if (!states.has(root)) this.#dropRoot(root);
    for (const [root, state] of states) this.#setRoot(root, state);
    return [...states.keys()];
  }

  /** Reads `roots` (every root when null) and the roots they share leases or waiters with. */
  async #load(roots: readonly string[] | null, deadline: number): Promise<string[]> {
    let read = await this.#retrying(deadline, async () => this.#absorb(roots, (await this.#client.txn([], this.#readsOf(roots), [])).ranges));
    for (;;) {
      const missing = this.#closure(read).filter((root) => !this.#cache.has(root));
      if (missing.length === 0) return read;
      const more = await this.#retrying(deadline, async () => this.#absorb(missing, (await this.#client.txn([], this.#readsOf(missing), [])).ranges));
      read = [...read, ...more];
    }
  }

  /** `roots` and every root a lease or waiter of them also holds or waits on. */
  #closure(roots: Iterable<string>): string[] {
    const out = new Set(roots);
    const queue = [...out];
    while (queue.length > 0) {
      const state = this.#cache.get(queue.pop()!);
      if (!state) continue;
      for (const r of [...state.leases, ...state.waiters]) {
        for (const root of rootsOf(r.resources)) {
          if (!out.has(root)) {
            out.add(root);
            queue.push(root);
          }
        }
      }
    }
    return [...out];
  }

  // ------------------------------------------------------------------------------ operations

  #submit<T>(signal: AbortSignal | undefined, need: Need, run: (table: EtcdTable, uncertain: boolean) => ops.Result<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError('the store is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ need, run, resolve: resolve as (value: unknown) => void, reject, signal, uncertain: false });
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

  /** The roots a batch reads, after loading what the cache lacks; `fresh`: everything was read just now. */
  async #prepare(live: Pending[], deadline: number): Promise<{ roots: string[]; ended: string[]; fresh: boolean; all: boolean }> {
    const roots = new Set<string>();
    const unknownIds = new Set<string>();
    let all = false;
    let due = false;
    for (const op of live) {
      const need = op.need;
      if ('all' in need) all = true;
      else if ('due' in need) due = true;
      else if ('roots' in need) for (const root of need.roots) roots.add(root);
      else {
        for (const id of need.ids) {
          const known = this.#rootsById.get(id);
          if (known) for (const root of known) roots.add(root);
          else unknownIds.add(id);
        }
      }
    }
    const ended: string[] = [];
    if (unknownIds.size > 0) {
      // Ids this process has not seen: their index says which roots to read (none: ended or unknown).
      const ids = [...unknownIds];
      const reads: TxnOp[] = ids.flatMap((id) => [{ range: { key: this.#layout.index(id) } }, { range: { key: this.#layout.ended(id) } }]);
      const result = await this.#retrying(deadline, () => this.#client.txn([], reads, []));
      ids.forEach((id, i) => {
        const index = result.ranges[2 * i]?.[0];
        if (index) for (const root of JSON.parse(index.value) as string[]) roots.add(root);
        if ((result.ranges[2 * i + 1]?.length ?? 0) > 0) ended.push(id);
      });
    }
    if (all || due) {
      await this.#load(null, deadline);
      if (all) return { roots: [...this.#cache.keys()], ended, fresh: true, all: true };
      const now = processClock();
      for (const [root, state] of this.#cache) {
        const clock = Math.max(now, state.version?.clock ?? 0);
        const isDue = state.leases.some((l) => l.expiresAt <= clock) || state.waiters.some((w) => Math.min(w.deadline, w.aliveUntil) <= clock) ||
          state.delays.some((d) => d.until <= clock);
        if (isDue) roots.add(root);
      }
      return { roots: this.#closure(roots), ended, fresh: true, all: false };
    }
    const missing = [...roots].filter((root) => !this.#cache.has(root));
    let fresh = false;
    if (missing.length > 0) {
      await this.#load(missing, deadline);
      fresh = missing.length === roots.size;
    }
    return { roots: this.#closure(roots), ended, fresh, all: false };
  }

  /** The roots the batch reads, copied into its table; no re-read copy enters the cache meanwhile. */
  async #tableFor(live: Pending[], deadline: number): Promise<{ table: EtcdTable; roots: string[]; fresh: boolean; all: boolean }> {
    this.#preparing = true;
    try {
      const { roots, ended, fresh, all } = await this.#prepare(live, deadline);
      // Loading may have found more roots (the closure): make sure each one is in the cache.
      const absent = roots.filter((root) => !this.#cache.has(root));
      if (absent.length > 0) await this.#load(absent, deadline);
      return { table: new EtcdTable(this.#layout, new Map(roots.map((root) => [root, this.#cache.get(root)!])), ended), roots, fresh, all };
    } finally {
      this.#preparing = false;
    }
  }

  async #runBatch(batch: Pending[]): Promise<void> {
    const deadline = performance.now() + this.#options.operationTimeoutMs;
    let live = batch;
    for (let attempt = 0; ; attempt++) {
      live = live.filter((op) => {
        if (!op.signal?.aborted || op.uncertain) return true;
        op.reject(op.signal.reason);
        return false;
      });
      if (live.length === 0) return;
      if (this.#closed) throw new StoreUnavailableError('the store is closed');
      if (performance.now() > deadline) throw new StoreUnavailableError(`no etcd transaction committed within ${this.#options.operationTimeoutMs} ms`);

      await this.#refresh.settled();
      const { table, roots, fresh, all } = await this.#tableFor(live, deadline);
      table.begin(processClock());

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
        live = live.filter((_, i) => i !== thrower);
        continue;
      }
      const changes = results.flatMap((r) => r.changes);
      const failureReads = this.#readsOf(all ? null : roots);

      try {
        if (!table.hasWrites) {
          if (!fresh) {
            // Read-only: valid if none of its roots was written since they were read.
            const check = await this.#client.txn(table.compares(), [], failureReads);
            if (!check.succeeded) {
              this.#absorb(all ? null : roots, check.ranges);
              continue;
            }
          }
          this.#settle(live, results, changes, table);
          return;
        }
        const endedLease = await this.#endedLeaseId();
        const result = await this.#client.txn(table.compares(), table.ops(endedLease, this.#origin, changes), failureReads);
        if (!result.succeeded) {
          // Someone else committed on these roots (so no lockstep): run again at once on what the
          // failure branch read. A pause would let that go stale and fail the retry too (docs/etcd.md).
          this.#absorb(all ? null : roots, result.ranges);
          continue;
        }
        table.committed(result.revision, changes);
        for (const r of results) fixNumbers(r.value, result.revision);
        let first = true;
        for (const root of [...table.written].sort()) {
          this.#setRoot(root, table.stateOf(root, result.revision, table.versionOf(root, this.#origin, first ? changes : [])));
          first = false;
        }
        this.#settle(live, results, changes, table);
        return;
      } catch (error) {
        if (!(error instanceof EtcdCallError)) throw error;
        for (const root of roots) this.#dropRoot(root);
        if (/lease not found/i.test(error.message)) this.#endedLease = null;
        if (error.maybeApplied) for (const op of live) op.uncertain = true;
        await sleep(Math.min(500, 20 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  /** After a commit (or a validated read): publish, re-arm, answer each operation. */
  #settle(live: Pending[], results: ops.Result<unknown>[], changes: StoreChange[], table: EtcdTable): void {
    this.#versions.publish(changes);
    const due = table.nextDue();
    if (due !== null) this.#due.arm(due, table.now());
    for (const r of results) this.#appended += r.changes.filter((c) => c.type !== 'waiting' && c.type !== 'timed-out' && c.type !== 'left').length;
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

  acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    this.#refresh.remember(request.id);
    return this.#submit(options.signal, { roots: rootsOf(request.resources) }, (t, uncertain) => {
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
    return this.#submit(options.signal, { ids: [ticket] }, (t) => ops.poll(t, ticket));
  }
  cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    this.#refresh.forget(ticket);
    return this.#submit(options.signal, { ids: [ticket] }, (t) => ops.cancel(t, ticket, options.by));
  }
  renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return this.#submit(options.signal, { ids: [leaseId] }, (t) => ops.renew(t, leaseId, ttlMs));
  }
  release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    this.#refresh.forget(leaseId);
    return this.#submit(options.signal, { ids: [leaseId] }, (t) => ops.release(t, leaseId, options.by));
  }
  get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    return this.#submit(options.signal, { ids: [leaseId] }, (t) => ({ value: ops.get(t, leaseId), changes: [], now: t.now() }));
  }
  releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    const need: Need = options.key === undefined ? { all: true } : { roots: [rootOf(options.key)] };
    return this.#submit(options.signal, need, (t) => ops.releaseOwner(t, owner, options.key, options.by));
  }
  forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return this.#submit(options.signal, { roots: [rootOf(key)] }, (t) => ops.forceRelease(t, key, options.by));
  }
  list(options: ListOptions = {}): Promise<LockTable> {
    return this.#submit(options.signal, { all: true }, (t) => ({ value: ops.list(t, options.prefix ?? ''), changes: [], now: t.now() }));
  }
  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    try {
      return await readHistory(this.#client, this.#layout, query, options.signal);
    } catch (error) {
      throw unavailable(error);
    }
  }
  async sweep(options: CallOptions = {}): Promise<number | null> {
    await this.#submit(options.signal, { due: true }, (t) => ops.sweep(t));
    if (this.#appended >= Math.max(100, this.#options.historyLimit / 10)) {
      this.#appended = 0;
      await pruneHistory(this.#client, this.#layout, this.#options.historyLimit, options.signal).catch(() => {});
    }
    let due: number | null = null;
    for (const state of this.#cache.values()) {
      const next = state.version?.nextDue ?? null;
      if (next !== null && (due === null || next < due)) due = next;
    }
    return due;
  }
  watch(listener: (change: StoreChange) => void): () => void {
    return this.#versions.listen(listener);
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#due.stop();
    this.#versions.close();
    this.#refresh.close();
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
