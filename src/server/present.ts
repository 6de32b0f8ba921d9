/**
 * How the server writes domain values and errors as JSON: times as ISO 8601 UTC next to `ttlMs`,
 * errors as `{ error: { code, message, ...data } }`, and lease ids shortened wherever they are logged.
 */
import { HoldfastError, LockBusyError, WaitTimeoutError } from '../model/errors.js';
import type { LeaseRecord, Metadata, Resource } from '../model/types.js';

export interface LeaseJson {
  id: string;
  owner: string;
  resources: Resource[];
  fence: number;
  acquiredAt: string;
  expiresAt: string;
  ttlMs: number;
  requestId: string | null;
  metadata: Metadata;
  lockDelayMs: number;
}

let lastMs = Number.NaN;
let lastIso = '';

/**
 * `ms` as ISO 8601 UTC. The last answer is kept: a grant's `acquiredAt` and the answer's `now` are
 * usually the same millisecond, and a `Date` and its string cost ~0.5 µs.
 */
export function iso(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

export function leaseJson(lease: LeaseRecord): LeaseJson {
  return {
    id: lease.id, owner: lease.owner, resources: lease.resources, fence: lease.fence,
    acquiredAt: iso(lease.acquiredAt), expiresAt: iso(lease.expiresAt), ttlMs: lease.ttlMs,
    requestId: lease.requestId, metadata: lease.metadata, lockDelayMs: lease.lockDelayMs,
  };
}

/** The inverse of `leaseJson`, for the HTTP client. */
export function leaseFromJson(json: LeaseJson): LeaseRecord {
  return {
    id: json.id, owner: json.owner, resources: json.resources, fence: json.fence,
    acquiredAt: Date.parse(json.acquiredAt), expiresAt: Date.parse(json.expiresAt), ttlMs: json.ttlMs,
    requestId: json.requestId, metadata: json.metadata, lockDelayMs: json.lockDelayMs,
  };
}

/** A lease id as logs may show it: a short prefix, never the capability itself. */
export function shortId(id: string): string {
  return `${id.slice(0, 6)}…`;
}

/** Replaces lease ids in a URL path by their short prefix, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/(\/v1\/leases\/)([A-Za-z0-9_-]{6})[A-Za-z0-9_-]*/g, '$1$2…');
}

/** `Retry-After` in whole seconds (at least 1). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The error answer's body. `extra` adds data (such as the store clock `now`). */
export function errorBody(error: HoldfastError, extra: Record<string, unknown> = {}): { error: Record<string, unknown> } {
  return { error: { ...error.toJSON(), ...extra } };
}

/** True for the errors that carry holders and a retry hint. */
export function isBlocked(error: unknown): error is LockBusyError | WaitTimeoutError {
  return error instanceof LockBusyError || error instanceof WaitTimeoutError;
}
