/** Options of `openLocks` and of `acquire`, with their defaults in one frozen object. */
import { parseDurationIn, type Duration } from '../model/duration.js';
import { InvalidRequestError } from '../model/errors.js';
import { LIMITS, validateOwner } from '../model/request.js';
import type { LockStore } from '../stores/store.js';
import { hostname } from 'node:os';

export interface LocksOptions {
  /**
   * The owner used when an `acquire` call names none (a task id, a workflow name, a host).
   * @default undefined (every acquire must name its owner)
   */
  owner?: string;
  /**
   * Who performs `releaseOwner` and `forceRelease` through this object, recorded in history.
   * @default `${hostname()}:${process.pid}`
   */
  actor?: string;
  /**
   * Lease length of acquires that name none.
   * @default 30000 (30 s)
   */
  ttlMs?: Duration;
  /**
   * A waiter that has not checked in for this long loses its place in the queue (it died).
   * Waiters check in three times per period.
   * @default 5000
   */
  waiterTtlMs?: Duration;
  /**
   * Renew held leases automatically, at a third of their TTL.
   * @default true
   */
  autoRenew?: boolean;
  /**
   * A lease that cannot be renewed is considered lost this long before the store would expire it,
   * measured on this process's monotonic clock. `undefined`: a tenth of the TTL, 50 ms..2 s.
   * @default undefined
   */
  safetyMarginMs?: Duration;
  /**
   * Use this store instead of opening one from the URL.
   * @default undefined
   */
  store?: LockStore;
  /**
   * Options passed to the store opened from the URL (for example `{ schema: 'locks' }` for Postgres,
   * `{ synchronous: 'NORMAL' }` for SQLite).
   * @default {}
   */
  storeOptions?: Record<string, unknown>;
}

export interface ResolvedLocksOptions {
  owner: string | undefined;
  actor: string;
  ttlMs: number;
  waiterTtlMs: number;
  autoRenew: boolean;
  safetyMarginMs: number | undefined;
}

export const LOCKS_DEFAULTS = Object.freeze({
  ttlMs: LIMITS.defaultTtlMs,
  waiterTtlMs: 5000,
  autoRenew: true,
  storeOptions: Object.freeze({}),
});

export function resolveLocksOptions(options: LocksOptions): ResolvedLocksOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidRequestError('options', 'expected an object');
  const autoRenew = options.autoRenew ?? LOCKS_DEFAULTS.autoRenew;
  if (typeof autoRenew !== 'boolean') throw new InvalidRequestError('autoRenew', `expected a boolean, got ${typeof autoRenew}`);
  return {
    owner: options.owner === undefined ? undefined : validateOwner(options.owner, 'owner'),
    actor: options.actor === undefined ? `${hostname()}:${process.pid}` : validateOwner(options.actor, 'actor'),
    ttlMs: options.ttlMs === undefined ? LOCKS_DEFAULTS.ttlMs : parseDurationIn(options.ttlMs, 'ttlMs', LIMITS.minTtlMs, LIMITS.maxTtlMs),
    waiterTtlMs: options.waiterTtlMs === undefined ? LOCKS_DEFAULTS.waiterTtlMs : parseDurationIn(options.waiterTtlMs, 'waiterTtlMs', 300, 600_000),
    autoRenew,
    safetyMarginMs: options.safetyMarginMs === undefined ? undefined : parseDurationIn(options.safetyMarginMs, 'safetyMarginMs', 0, LIMITS.maxTtlMs),
  };
}

/** The margin by which a lease that cannot renew is dropped before the store would drop it. */
export function safetyMargin(ttlMs: number, configured: number | undefined): number {
  if (configured !== undefined) return Math.min(configured, ttlMs / 2);
  return Math.min(2000, Math.max(50, ttlMs / 10));
}
