/**
 * A held lease. It renews itself at a third of its TTL and fences itself: when renewals keep
 * failing it considers itself lost at its local deadline (the store's expiry measured on this
 * process's monotonic clock, minus a safety margin), *before* the store would expire it. Then its
 * `signal` aborts with a `LeaseLostError` and a `lost` event fires. Timers never throw.
 */
import { LeaseLostError } from '../model/errors.js';
import type { ClockEntry, LeaseClock } from './lease-clock.js';
import type { Duration } from '../model/duration.js';
import { validateTtl } from '../model/request.js';
import type { LeaseRecord, Metadata, Resource } from '../model/types.js';
import type { CallOptions, EndOptions, ImmediateCalls, LockStore } from '../stores/store.js';
import { LazyEmitter } from '../util/lazy-emitter.js';

export interface LeaseEvents {
  /** The lease was renewed; its new expiry. */
  renewed: [expiresAt: Date];
  /** The lease is lost: expired, forced, or not renewable in time. `signal` has aborted. */
  lost: [error: LeaseLostError];
  /** The lease was released by its holder. */
  released: [];
}

export interface RenewOptions extends CallOptions {
  /** New TTL from now. @default the lease's current TTL */
  ttlMs?: Duration;
}

/** What a lease needs from the `Locks` object that made it. */
export interface LeaseHost {
  readonly store: LockStore;
  /** Where the lease's renewals and deadline are scheduled. */
  readonly clock: LeaseClock;
  /** The store's synchronous release, where it has one. */
  readonly immediate: ImmediateCalls | undefined;
  readonly autoRenew: boolean;
  marginFor(ttlMs: number): number;
  ended(lease: Lease, lost: LeaseLostError | null): void;
}

/** Builds an error without capturing a stack: an abort reason on the hot release path, not a bug report. */
function withoutStack<E extends Error>(make: () => E): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** `detached`: the `Locks` object closed without releasing it; the lease lives on in the store until its TTL. */
export type LeaseState = 'held' | 'released' | 'lost' | 'detached';

/** Internal: the `Locks` object tells a lease that the store ended it (forced, released by owner, expired). */
export const NOTIFY_ENDED = Symbol('holdfast.notifyEnded');
/** Internal: the `Locks` object hands a lease a fresher record of itself (attach, requestId retry). */
export const REFRESH = Symbol('holdfast.refresh');
/** Internal: the `Locks` object closes without releasing the lease. */
export const DETACH = Symbol('holdfast.detach');

export class Lease extends LazyEmitter<LeaseEvents> implements AsyncDisposable {
  readonly id: string;
  readonly owner: string;
  readonly fence: number;
  readonly metadata: Metadata;
  /** Made when first read: most leases are released without anyone reading them. */
  #resources: readonly Resource[] | null = null;
  #acquiredAt: Date | null = null;
  readonly #host: LeaseHost;
  /** Created when `signal` is first read: most leases are released without anyone listening. */
  #controller: AbortController | null = null;
  /** Why the lease was lost (state `lost`), for its signal. */
  #lostError: LeaseLostError | null = null;
  #record: LeaseRecord;
  /** performance.now() at which this process must consider the lease lost. */
  #localDeadline: number;
  #state: LeaseState = 'held';
  /** The lease's place on its `Locks` object's clock: its next renewal or deadline. */
  readonly #timer: ClockEntry;
  #renewing: Promise<void> | null = null;
  /** The last store release failed: the next `release()` tries again. */
  #releaseFailed = false;

  /** `sentAt`: performance.now() when the call that returned `record` was sent; `storeNow`: the store's clock in that answer. */
  constructor(host: LeaseHost, record: LeaseRecord, sentAt: number, storeNow: number) {
    super();
    this.#host = host;
    this.#timer = host.clock.entry(() => this.#tick());
    this.#record = record;
    this.id = record.id;
    this.owner = record.owner;
    this.fence = record.fence;
    this.metadata = record.metadata;
    this.#localDeadline = this.#deadlineFrom(record, sentAt, storeNow);
    this.#schedule();
  }

  /** What the lease holds, in request order (a frozen copy: the store's record is not exposed). */
  get resources(): readonly Resource[] {
    this.#resources ??= Object.freeze(this.#record.resources.map((r) => Object.freeze({ key: r.key, mode: r.mode, limit: r.limit })));
    return this.#resources;
  }
  /** The keys of the lease, in request order. */
  get keys(): string[] {
    return this.#record.resources.map((r) => r.key);
  }
  get acquiredAt(): Date {
    this.#acquiredAt ??= new Date(this.#record.acquiredAt);
    return this.#acquiredAt;
  }
  get expiresAt(): Date {
    return new Date(this.#record.expiresAt);
  }
  get ttlMs(): number {
    return this.#record.ttlMs;
  }
  get state(): LeaseState {
    return this.#state;
  }
  /** Aborts (with a `LeaseLostError`) when the lease is lost, and when it is released. */
  get signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#state !== 'held') this.#controller.abort(this.#endReason());
    }
    return this.#controller.signal;
  }
  /** Milliseconds until this process considers the lease lost unless it renews. */
  get remainingMs(): number {
    return this.#state === 'held' ? Math.max(0, this.#localDeadline - performance.now()) : 0;
  }

  #deadlineFrom(record: LeaseRecord, sentAt: number, storeNow: number): number {
    const remaining = record.expiresAt - storeNow;
    return sentAt + remaining - this.#host.marginFor(record.ttlMs);
  }

  /** Arms the next renewal (auto-renew) or the self-fencing deadline. */
  #schedule(): void {
    this.#host.clock.cancel(this.#timer);
    if (this.#state !== 'held') return;
    const left = this.#localDeadline - performance.now();
    if (left <= 0) {
      this.#lose(new LeaseLostError(this.id, 'it could not be renewed before its deadline'));
      return;
    }
    const delay = this.#host.autoRenew ? Math.min(left, Math.max(10, Math.min(this.#record.ttlMs / 3, left / 2))) : left;
    this.#host.clock.schedule(this.#timer, performance.now() + delay);
  }

  #tick(): void {
    if (this.#state !== 'held') return;
    if (performance.now() >= this.#localDeadline) {
      this.#lose(new LeaseLostError(this.id, 'it could not be renewed before its deadline'));
      return;
    }
    if (!this.#host.autoRenew) {
      this.#schedule();
      return;
    }
    this.renew().catch(() => {
      // Transient failures are retried by #schedule until the local deadline; loss is reported through `lost`.
      this.#scheduleRetry();
    });
  }

  #scheduleRetry(): void {
    if (this.#state !== 'held') return;
    const left = this.#localDeadline - performance.now();
    if (left <= 0) {
      this.#lose(new LeaseLostError(this.id, 'it could not be renewed before its deadline'));
      return;
    }
    this.#host.clock.schedule(this.#timer, performance.now() + Math.max(10, Math.min(left, 1000, this.#record.ttlMs / 10)));
  }

  /** Aborts the signal, once the state has left `held` (now if someone has it, else when it is first read). */
  #end(): void {
    this.#controller?.abort(this.#endReason());
  }

  /** The signal's abort reason, made from the state the lease ended in (no closure kept per lease). */
  #endReason(): LeaseLostError {
    if (this.#state === 'released') return withoutStack(() => new LeaseLostError(this.id, 'it was released by its holder'));
    if (this.#state === 'detached') return new LeaseLostError(this.id, 'its Locks object was closed without releasing it');
    return this.#lostError ?? new LeaseLostError(this.id, `it was ${this.#state}`);
  }

  #lose(error: LeaseLostError): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.#host.clock.cancel(this.#timer);
    this.#lostError = error;
    this.#end();
    this.#host.ended(this, error);
    if (this.listenerCount('lost') > 0) this.emit('lost', error);
  }

  [NOTIFY_ENDED](how: string): void {
    this.#lose(new LeaseLostError(this.id, `the store reports it ${how}`));
  }

  [REFRESH](record: LeaseRecord, sentAt: number, storeNow: number): void {
    if (this.#state !== 'held' || record.expiresAt < this.#record.expiresAt) return;
    this.#record = record;
    this.#localDeadline = this.#deadlineFrom(record, sentAt, storeNow);
    this.#schedule();
  }

  [DETACH](): void {
    if (this.#state !== 'held') return;
    this.#state = 'detached';
    this.#host.clock.cancel(this.#timer);
    this.#end();
  }

  /** Extends the lease from now (store time). Throws `LEASE_LOST` if it has ended. */
  async renew(options: RenewOptions = {}): Promise<void> {
    if (this.#state !== 'held') throw new LeaseLostError(this.id, `it was ${this.#state}`);
    const ttlMs = options.ttlMs === undefined ? this.#record.ttlMs : validateTtl(options.ttlMs);
    // Concurrent renewals share one round trip when they ask for the same TTL.
    if (this.#renewing !== null && ttlMs === this.#record.ttlMs) return this.#renewing;
    const attempt = this.#renewOnce(ttlMs, options.signal);
    this.#renewing = attempt;
    try {
      await attempt;
    } finally {
      if (this.#renewing === attempt) this.#renewing = null;
    }
  }

  async #renewOnce(ttlMs: number, signal: AbortSignal | undefined): Promise<void> {
    const sentAt = performance.now();
    const outcome = await this.#host.store.renew(this.id, ttlMs, { signal });
    if (outcome.status !== 'renewed') {
      const error = new LeaseLostError(this.id, outcome.status === 'lost' ? 'the store ended it (expired, released or forced)' : 'the store does not know it');
      this.#lose(error);
      throw error;
    }
    if (this.#state !== 'held') throw new LeaseLostError(this.id, `it was ${this.#state}`);
    this.#record = outcome.lease;
    this.#localDeadline = this.#deadlineFrom(outcome.lease, sentAt, outcome.now);
    this.#schedule();
    if (this.listenerCount('renewed') > 0) this.emit('renewed', this.expiresAt);
  }

  /**
   * Releases the lease. Returns false when it had already ended (expired, forced, released).
   * If the store can't be reached it throws, and a later `release()` tries the store again
   * (otherwise the store ends the lease at its TTL); the lease counts as released here at once.
   */
  release(options: EndOptions = {}): Promise<boolean> {
    if (this.#state === 'released' && !this.#releaseFailed) return Promise.resolve(false);
    const wasHeld = this.#state === 'held';
    this.#host.clock.cancel(this.#timer);
    if (wasHeld) {
      this.#state = 'released';
      this.#end();
      this.#host.ended(this, null);
    }
    const { store, immediate } = this.#host;
    // The store's synchronous release (memory) answers in this call: no async frame is made.
    if (immediate === undefined) return this.#released(wasHeld, store, options);
    try {
      return Promise.resolve(this.#releasedWith(wasHeld, immediate.release(this.id, options)));
    } catch (error) {
      this.#releaseFailed = true;
      return Promise.reject(error);
    }
  }

  async #released(wasHeld: boolean, store: LockStore, options: EndOptions): Promise<boolean> {
    try {
      return this.#releasedWith(wasHeld, await store.release(this.id, options));
    } catch (error) {
      this.#releaseFailed = true;
      throw error;
    }
  }

  #releasedWith(wasHeld: boolean, released: boolean): boolean {
    this.#releaseFailed = false;
    if (wasHeld && this.listenerCount('released') > 0) this.emit('released');
    return released;
  }

  /** `await using lease = await locks.acquire(...)` releases it at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === 'held' || this.#releaseFailed) await this.release();
  }

  toJSON(): Record<string, unknown> {
    return {
      id: this.id, owner: this.owner, resources: this.resources, fence: this.fence,
      acquiredAt: this.acquiredAt.toISOString(), expiresAt: this.expiresAt.toISOString(),
      ttlMs: this.ttlMs, metadata: this.metadata,
    };
  }
}
