/**
 * `Locks`: the library face of holdfast over any store. It validates requests, waits in the
 * store's queue, hands out self-renewing, self-fencing `Lease` objects, and offers the admin
 * operations of SPEC section 6.
 */
import { EventEmitter } from 'node:events';
import type { Duration } from '../model/duration.js';
import { InvalidRequestError, LeaseLostError, LockBusyError, NotFoundError, StoreUnavailableError } from '../model/errors.js';
import { validateKey } from '../model/keys.js';
import { combineSignals, unlimitListeners } from '../model/linked-abort.js';
import { isLeaseId, validateOwner, validateRequest, validateTtl, type ResourceInput } from '../model/request.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable, Metadata, Mode } from '../model/types.js';
import { immediateCallsOf, type CallOptions, type EndOptions, type ImmediateCalls, type LockStore, type StoreChange } from '../stores/store.js';
import { giveBacksOf } from './give-backs.js';
import { DETACH, Lease, NOTIFY_ENDED, REFRESH, type LeaseHost } from './lease.js';
import { resolveLocksOptions, safetyMargin, type LocksOptions, type ResolvedLocksOptions } from './options.js';
import { Heartbeats } from './heartbeats.js';
import { ChurnMap } from '../util/churn-map.js';
import { LeaseClock } from './lease-clock.js';
import { acquireAndWait, tryOnceNow, type Granted } from './wait.js';
import { WakeRouter } from './wakeups.js';

export interface AcquireOptions extends CallOptions {
  /** Who is asking. @default the `owner` of `openLocks` options (required if that is unset) */
  owner?: string;
  /** Mode when the first argument is a single key. @default 'exclusive' */
  mode?: Mode;
  /** Shared holder limit when the first argument is a single shared key. @default null (unlimited) */
  limit?: number | null;
  /** Lease length. @default the `ttlMs` of `openLocks` options (30 s) */
  ttlMs?: Duration;
  /** How long to wait in the queue; 0 tries once. @default 0 */
  waitMs?: Duration;
  /** Makes the request idempotent for this owner while its lease lives. @default null */
  requestId?: string;
  /** A JSON object shown to anyone blocked by the lease; `message` is the sentence they read. @default {} */
  metadata?: Metadata;
  /** After an abnormal end (expiry, force, owner cleanup) the keys stay unavailable this long. @default 0 */
  lockDelayMs?: Duration;
  /** Renew the lease automatically. @default the `autoRenew` of `openLocks` options (true) */
  autoRenew?: boolean;
}

export interface LocksEvents {
  /** A lease of this object was lost. */
  lost: [lease: Lease, error: LeaseLostError];
  /** A change in the store seen by this object (its own, and others' where the store pushes). */
  change: [change: StoreChange];
}

export interface ReleaseOwnerOptions extends CallOptions {
  /** Only leases that hold this exact key (vRO's `unlock(id, owner)`). @default undefined */
  key?: string;
}

export interface ListOptions extends CallOptions {
  /** Only keys starting with this string. @default '' */
  prefix?: string;
}

export type HistoryOptions = HistoryQuery & CallOptions;

export interface CloseOptions {
  /** Release the leases held through this object; `false` leaves them for another process to `attach`. @default true */
  release?: boolean;
  /**
   * How long closing may go on giving back what waits that ended during a store outage could not:
   * a ticket left on abort or timeout, a grant that came after an abort (each retried in the
   * background until then). 0 to 600000 ms; 0 tries each once.
   * @default 2000
   */
  giveBackMs?: number;
}

export const CLOSE_DEFAULTS = Object.freeze({ release: true, giveBackMs: 2000 });

export class Locks extends EventEmitter<LocksEvents> implements AsyncDisposable {
  readonly store: LockStore;
  readonly #options: ResolvedLocksOptions;
  /** Held `Lease` objects by id (one object per lease) and by fence (how store changes name them). */
  readonly #leases = new ChurnMap<string, Lease>();
  readonly #byFence = new ChurnMap<number, Lease>();
  readonly #router: WakeRouter;
  readonly #heartbeats: Heartbeats;
  readonly #unwatch: () => void;
  readonly #closing = new AbortController();
  /** Acquires in flight, and what `close()` waits on until they are all settled. */
  #inFlight = 0;
  #settled: (() => void) | null = null;
  /** One timer for the renewals and deadlines of every lease held here. */
  readonly #clock = new LeaseClock();
  /** The store's synchronous acquire and release (the memory store), or undefined. */
  readonly #immediate: ImmediateCalls | undefined;
  /** The two hosts leases are made with (renewing themselves or not). */
  readonly #hosts: Record<'renewing' | 'fixed', LeaseHost>;
  #closed = false;

  constructor(store: LockStore, options: LocksOptions = {}) {
    super();
    this.store = store;
    this.#options = resolveLocksOptions(options);
    this.#router = new WakeRouter(store);
    this.#heartbeats = new Heartbeats(store, this.#options.waiterTtlMs);
    this.#immediate = immediateCallsOf(store);
    this.#hosts = { renewing: this.#host(true), fixed: this.#host(false) };
    // Every wait listens to the closing signal; many concurrent waits are normal, not a leak.
    unlimitListeners(this.#closing.signal);
    this.#unwatch = store.watch((change) => {
      // A lease of ours ended by someone else (forced, released by owner, expired): lost at once,
      // not at its next renewal. Our own releases mark the lease released before the change comes.
      if (change.fence !== null && (change.type === 'released' || change.type === 'forced' || change.type === 'expired')) {
        const lease = this.#byFence.get(change.fence);
        if (lease?.state === 'held') lease[NOTIFY_ENDED](change.type === 'released' ? 'released by someone else' : change.type);
      }
      if (this.listenerCount('change') > 0) this.emit('change', change);
    });
  }

  #host(autoRenew: boolean): LeaseHost {
    return {
      store: this.store,
      clock: this.#clock,
      immediate: this.#immediate,
      autoRenew,
      marginFor: (ttlMs) => safetyMargin(ttlMs, this.#options.safetyMarginMs),
      ended: (lease, lost) => {
        if (this.#leases.get(lease.id) === lease) this.#leases.delete(lease.id);
        if (this.#byFence.get(lease.fence) === lease) this.#byFence.delete(lease.fence);
        if (lost && this.listenerCount('lost') > 0) this.emit('lost', lease, lost);
      },
    };
  }

  /** One `Lease` object per lease: a requestId retry or an attach of a lease held here returns it. */
  #adopt(record: LeaseRecord, sentAt: number, now: number, autoRenew: boolean): Lease {
    const existing = this.#leases.get(record.id);
    if (existing?.state === 'held') {
      existing[REFRESH](record, sentAt, now);
      return existing;
    }
    const lease = new Lease(autoRenew ? this.#hosts.renewing : this.#hosts.fixed, record, sentAt, now);
    if (lease.state === 'held') {
      this.#leases.set(lease.id, lease);
      this.#byFence.set(lease.fence, lease);
    }
    return lease;
  }

  #check(): void {
    if (this.#closed) throw new StoreUnavailableError('this Locks object is closed');
  }

  /**
   * Acquires `target` (a key, or resources `[{ key, mode, limit }]`), waiting up to `waitMs`.
   * Throws `LOCK_BUSY` (try-once) or `WAIT_TIMEOUT` with the holders, or the signal's reason.
   */
  acquire(target: string | readonly ResourceInput[], options: AcquireOptions = {}): Promise<Lease> {
    let sent: Granted | Promise<Granted>;
    try {
      this.#check();
      sent = this.#grant(target, options);
      // A try-once the store answered synchronously (memory): no async frame is made.
      if (!(sent instanceof Promise)) return Promise.resolve(this.#adopt(sent.lease, sent.sentAt, sent.now, options.autoRenew ?? this.#options.autoRenew));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#adoptWhenGranted(sent, options);
  }

  /** Waits for a grant sent by `#grant` (counted in flight, for `close()`) and wraps it in a `Lease`. */
  async #adoptWhenGranted(sent: Promise<Granted>, options: AcquireOptions): Promise<Lease> {
    this.#inFlight++;
    try {
      const granted = await sent;
      return this.#adopt(granted.lease, granted.sentAt, granted.now, options.autoRenew ?? this.#options.autoRenew);
    } finally {
      this.#done();
    }
  }

  /**
   * Like `acquire`, but returns the store's lease record without a `Lease` object: nothing
   * renews it, nothing fences it, and `close()` leaves it alone. For servers that hand leases
   * to remote clients, which renew and release them by id.
   */
  async grant(target: string | readonly ResourceInput[], options: Omit<AcquireOptions, 'autoRenew'> = {}): Promise<Granted> {
    this.#check();
    this.#inFlight++;
    try {
      return await this.#grant(target, options);
    } finally {
      this.#done();
    }
  }

  /** An acquire or grant has settled. */
  #done(): void {
    if (--this.#inFlight === 0 && this.#settled !== null) this.#settled();
  }

  /**
   * Validates and sends the request. Throws (synchronously) on bad input, and on a try-once the
   * store answers synchronously (busy); the callers are async. That answer is a `Granted`, not a promise.
   */
  #grant(target: string | readonly ResourceInput[], options: AcquireOptions): Granted | Promise<Granted> {
    const resources =
      typeof target === 'string' ? [{ key: target, mode: options.mode ?? 'exclusive', limit: options.limit ?? null }] : target;
    if (typeof target !== 'string' && (options.mode !== undefined || options.limit !== undefined)) {
      throw new InvalidRequestError('mode', 'give mode and limit inside each resource when acquiring several');
    }
    const { request, waitMs } = validateRequest({
      owner: options.owner ?? this.#options.owner,
      resources,
      ttlMs: options.ttlMs ?? this.#options.ttlMs,
      waitMs: options.waitMs,
      requestId: options.requestId,
      metadata: options.metadata,
      lockDelayMs: options.lockDelayMs,
    });
    // Aborted by the caller's signal or by close(); followed only while this acquire runs.
    const linked = options.signal ? combineSignals(options.signal, this.#closing.signal) : null;
    const signal = linked?.signal ?? this.#closing.signal;
    try {
      signal.throwIfAborted();
    } catch (error) {
      linked?.unlink();
      throw error;
    }
    if (linked === null) return this.#send(request, waitMs, signal);
    let granted: Granted | Promise<Granted>;
    try {
      granted = this.#send(request, waitMs, signal);
    } catch (error) {
      linked.unlink();
      throw error;
    }
    if (!(granted instanceof Promise)) {
      linked.unlink();
      return granted;
    }
    return granted.finally(() => linked.unlink());
  }

  /** Sends a validated request: synchronously where the store answers a try-once synchronously. */
  #send(request: LockRequest, waitMs: number, signal: AbortSignal): Granted | Promise<Granted> {
    if (this.#immediate !== undefined && waitMs === 0) return tryOnceNow(this.store, this.#immediate, request, this.#options.waiterTtlMs, signal);
    return acquireAndWait({
      store: this.store, router: this.#router, request, waitMs, waiterTtlMs: this.#options.waiterTtlMs, signal, heartbeats: this.#heartbeats,
      immediate: this.#immediate,
    });
  }

  /** Like `acquire` with `waitMs: 0`, but returns `null` when busy. */
  async tryAcquire(target: string | readonly ResourceInput[], options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lease | null> {
    try {
      return await this.acquire(target, { ...options, waitMs: 0 });
    } catch (error) {
      if (error instanceof LockBusyError) return null;
      throw error;
    }
  }

  /**
   * Runs `fn` under the lock and releases it in `finally`. `fn` gets the lease; its `signal`
   * aborts if the lease is lost while `fn` runs.
   */
  async withLock<T>(target: string | readonly ResourceInput[], options: AcquireOptions, fn: (lease: Lease) => Promise<T> | T): Promise<T> {
    const lease = await this.acquire(target, options);
    try {
      return await fn(lease);
    } finally {
      await lease.release().catch(() => false);
    }
  }

  /** Reads a live lease by id (from any process), or null. */
  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    this.#check();
    if (!isLeaseId(leaseId)) return null;
    return this.store.get(leaseId, options);
  }

  /**
   * Takes over a lease by its id, for example in another process after a restart (oVirt's
   * async tasks): the returned `Lease` renews and releases it. Throws `NOT_FOUND` / `LEASE_LOST`.
   */
  async attach(leaseId: string, options: CallOptions & { autoRenew?: boolean; ttlMs?: Duration } = {}): Promise<Lease> {
    this.#check();
    if (!isLeaseId(leaseId)) throw new NotFoundError('The lease');
    const sentAt = performance.now();
    const renewed = await this.#renewById(leaseId, options);
    return this.#adopt(renewed.lease, sentAt, renewed.now, options.autoRenew ?? this.#options.autoRenew);
  }

  /** Renews a lease by id. Throws `LEASE_LOST` if it ended, `NOT_FOUND` if unknown. */
  async renew(leaseId: string, options: CallOptions & { ttlMs?: Duration } = {}): Promise<LeaseRecord> {
    this.#check();
    if (!isLeaseId(leaseId)) throw new NotFoundError('The lease');
    return (await this.#renewById(leaseId, options)).lease;
  }

  /** Renews by id with the given TTL or the lease's own; an ended lease is LEASE_LOST, an unknown one NOT_FOUND. */
  async #renewById(leaseId: string, options: CallOptions & { ttlMs?: Duration }): Promise<{ lease: LeaseRecord; now: number }> {
    let ttlMs: number;
    if (options.ttlMs !== undefined) ttlMs = validateTtl(options.ttlMs);
    else ttlMs = (await this.store.get(leaseId, options))?.ttlMs ?? this.#options.ttlMs;
    const outcome = await this.store.renew(leaseId, ttlMs, options);
    if (outcome.status === 'lost') throw new LeaseLostError(leaseId);
    if (outcome.status === 'unknown') throw new NotFoundError('The lease');
    return outcome;
  }

  /**
   * Releases a lease by id. Returns false if it had already ended or is unknown. With `by`
   * (who asks, when not the lease's owner: an operator, a cleanup job) the history records it.
   */
  async release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    this.#check();
    if (!isLeaseId(leaseId)) return false;
    const by = options.by === undefined ? undefined : validateOwner(options.by, 'by');
    const held = this.#leases.get(leaseId);
    if (held) return held.release({ by, signal: options.signal });
    return this.store.release(leaseId, { by, signal: options.signal });
  }

  /** Ends every lease of `owner` (on one key with `key`): Cloudron's releaseByTaskId. Returns the count. */
  async releaseOwner(owner: string, options: ReleaseOwnerOptions = {}): Promise<number> {
    this.#check();
    const valid = validateOwner(owner);
    const key = options.key === undefined ? undefined : validateKey(options.key, 'key');
    return this.store.releaseOwner(valid, { key, by: this.#options.actor, signal: options.signal });
  }

  /** Admin: ends every lease on `key`. Returns the count. */
  async forceRelease(key: string, options: CallOptions = {}): Promise<number> {
    this.#check();
    return this.store.forceRelease(validateKey(key), { by: this.#options.actor, signal: options.signal });
  }

  /** Held locks and queued waiters, with positions. */
  async list(options: ListOptions = {}): Promise<LockTable> {
    this.#check();
    if (options.prefix !== undefined && typeof options.prefix !== 'string') throw new InvalidRequestError('prefix', 'expected a string');
    return this.store.list(options);
  }

  /** Past lease events, newest first. */
  async history(options: HistoryOptions = {}): Promise<HistoryEvent[]> {
    this.#check();
    const { signal, ...query } = options;
    if (query.limit !== undefined && (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > 10_000)) {
      throw new InvalidRequestError('limit', `expected an integer 1..10000, got ${String(query.limit)}`);
    }
    return this.store.history(query, { signal });
  }

  /** Leases held through this object. */
  get held(): readonly Lease[] {
    return [...this.#leases.values()];
  }

  /**
   * Cancels waits, releases held leases (best effort; with `{ release: false }` they stay in
   * the store until their TTL, for another process to `attach`), gives back what waits that
   * ended during a store outage could not (`giveBackMs`), and closes the store.
   */
  async close(options: CloseOptions = {}): Promise<void> {
    const release = options.release ?? CLOSE_DEFAULTS.release;
    if (typeof release !== 'boolean') throw new InvalidRequestError('release', `expected a boolean, got ${typeof release}`);
    const giveBackMs = options.giveBackMs ?? CLOSE_DEFAULTS.giveBackMs;
    if (!Number.isInteger(giveBackMs) || giveBackMs < 0 || giveBackMs > 600_000) {
      throw new InvalidRequestError('giveBackMs', `expected an integer 0..600000, got ${String(giveBackMs)}`);
    }
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new StoreUnavailableError('this Locks object was closed'));
    // Waits leave their queues before the store closes; then held leases are released.
    if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#settled = resolve));
    const leases = [...this.#leases.values()];
    if (!release) for (const lease of leases) lease[DETACH]();
    else await Promise.allSettled(leases.map((lease) => lease.release()));
    await giveBacksOf(this.store).flush(giveBackMs);
    this.#leases.clear();
    this.#byFence.clear();
    this.#clock.close();
    this.#router.close();
    this.#heartbeats.close();
    this.#unwatch();
    await this.store.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
