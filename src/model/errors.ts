/**
 * The errors of SPEC section 4. Every error is a `HoldfastError` with a stable `code`,
 * a sentence a person can act on, the HTTP status it maps to, and data.
 */

export type ErrorCode =
  | 'LOCK_BUSY'
  | 'WAIT_TIMEOUT'
  | 'LEASE_LOST'
  | 'NOT_FOUND'
  | 'INVALID_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'STORE_UNAVAILABLE';

/** One blocker of a request: a live lease, a lock-delay left by an ended lease, or an earlier queued request. */
export interface Holder {
  key: string;
  mode: 'exclusive' | 'shared';
  owner: string;
  /** `held`: a live lease; `delayed`: the lock-delay of a lease that ended abnormally; `queued`: an earlier waiter. */
  state: 'held' | 'delayed' | 'queued';
  /** ISO 8601 UTC: when the lease was granted (or the waiter queued). */
  acquiredAt: string;
  /** ISO 8601 UTC: when the lease (or lock-delay) ends unless renewed; `null` for a queued waiter. */
  expiresAt: string | null;
  metadata: Record<string, unknown>;
}

export interface HoldfastErrorOptions {
  cause?: unknown;
}

export class HoldfastError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, status: number, message: string, options: HoldfastErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = status;
    this.name = 'HoldfastError';
  }

  /** The data of the error answer `{ error: { code, message, ...data } }`. */
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message };
  }
}

export class InvalidRequestError extends HoldfastError {
  readonly field: string;
  readonly reason: string;
  constructor(field: string, reason: string, options?: HoldfastErrorOptions) {
    super('INVALID_REQUEST', 400, `Invalid \`${field}\`: ${reason}`, options);
    this.name = 'InvalidRequestError';
    this.field = field;
    this.reason = reason;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), field: this.field, reason: this.reason };
  }
}

/** Renders blockers as the sentence of SPEC section 4. `now` is store time in ms. */
export function describeHolders(holders: readonly Holder[], now: number): string {
  if (holders.length === 0) return 'the request conflicts with another lease';
  const parts = holders.slice(0, 3).map((h) => describeHolder(h, now));
  const more = holders.length > 3 ? ` (and ${holders.length - 3} more)` : '';
  return parts.join('; ') + more;
}

function clock(iso: string): string {
  return iso.slice(11, 19);
}

function describeHolder(h: Holder, now: number): string {
  const message = typeof h.metadata['message'] === 'string' ? `: ${h.metadata['message']}` : '';
  if (h.state === 'queued') {
    return `"${h.key}" is awaited by owner "${h.owner}" (${h.mode}), queued since ${clock(h.acquiredAt)}${message}`;
  }
  const left = h.expiresAt === null ? 0 : Math.max(0, Date.parse(h.expiresAt) - now);
  const expires = `expires in ${Math.ceil(left / 1000)} s`;
  if (h.state === 'delayed') {
    return `"${h.key}" is in lock-delay after a lease of owner "${h.owner}" ended, ${expires}${message}`;
  }
  return `"${h.key}" is held by owner "${h.owner}" (${h.mode}) since ${clock(h.acquiredAt)}, ${expires}${message}`;
}

export interface BusyData {
  holders: Holder[];
  /** Upper bound of the time until the current blockers end unless renewed, in ms. */
  retryAfterMs: number;
  /** Store time (ms since epoch) at which the holders were read. */
  now: number;
}

export class LockBusyError extends HoldfastError {
  readonly holders: Holder[];
  readonly retryAfterMs: number;
  constructor(data: BusyData, options?: HoldfastErrorOptions) {
    super('LOCK_BUSY', 409, describeHolders(data.holders, data.now), options);
    this.name = 'LockBusyError';
    this.holders = data.holders;
    this.retryAfterMs = data.retryAfterMs;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), holders: this.holders, retryAfterMs: this.retryAfterMs };
  }
}

export class WaitTimeoutError extends HoldfastError {
  readonly holders: Holder[];
  readonly retryAfterMs: number;
  readonly waitedMs: number;
  constructor(data: BusyData & { waitedMs: number }, options?: HoldfastErrorOptions) {
    super('WAIT_TIMEOUT', 409, `Waited ${data.waitedMs} ms without a grant: ${describeHolders(data.holders, data.now)}`, options);
    this.name = 'WaitTimeoutError';
    this.holders = data.holders;
    this.retryAfterMs = data.retryAfterMs;
    this.waitedMs = data.waitedMs;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), holders: this.holders, retryAfterMs: this.retryAfterMs, waitedMs: this.waitedMs };
  }
}

export class LeaseLostError extends HoldfastError {
  readonly leaseId: string;
  constructor(leaseId: string, reason = 'it expired, was released, or was force-released', options?: HoldfastErrorOptions) {
    super('LEASE_LOST', 410, `The lease is no longer held: ${reason}`, options);
    this.name = 'LeaseLostError';
    this.leaseId = leaseId;
  }
}

export class NotFoundError extends HoldfastError {
  constructor(what: string, options?: HoldfastErrorOptions) {
    super('NOT_FOUND', 404, `${what} was not found`, options);
    this.name = 'NotFoundError';
  }
}

export class UnauthorizedError extends HoldfastError {
  constructor(message = 'A valid bearer token is required', options?: HoldfastErrorOptions) {
    super('UNAUTHORIZED', 401, message, options);
    this.name = 'UnauthorizedError';
  }
}

export class ForbiddenError extends HoldfastError {
  constructor(message: string, options?: HoldfastErrorOptions) {
    super('FORBIDDEN', 403, message, options);
    this.name = 'ForbiddenError';
  }
}

export class StoreUnavailableError extends HoldfastError {
  constructor(message: string, options?: HoldfastErrorOptions) {
    super('STORE_UNAVAILABLE', 503, `The store is unavailable, nothing was granted: ${message}`, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The server holds as many waits as it may (`maxWaiters`): this one was queued nowhere. A
 * `STORE_UNAVAILABLE` (503, `Retry-After`) like any answer that granted nothing for a reason of
 * the service; the client sends it again after `retryAfterMs` while its wait lasts.
 */
export class ServerBusyError extends HoldfastError {
  readonly retryAfterMs: number;
  readonly maxWaiters: number | null;
  constructor(data: { maxWaiters: number | null; retryAfterMs: number }, options?: HoldfastErrorOptions) {
    super(
      'STORE_UNAVAILABLE', 503,
      data.maxWaiters === null
        ? 'The server holds as many waits as it may; nothing was queued: send the request again later'
        : `The server holds ${data.maxWaiters} waits, its maxWaiters; nothing was queued: send the request again in ${Math.max(1, Math.ceil(data.retryAfterMs / 1000))} s`,
      options,
    );
    this.name = 'ServerBusyError';
    this.retryAfterMs = data.retryAfterMs;
    this.maxWaiters = data.maxWaiters;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: 'too-many-waiters', maxWaiters: this.maxWaiters, retryAfterMs: this.retryAfterMs };
  }
}
