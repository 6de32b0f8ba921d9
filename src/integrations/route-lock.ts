/**
 * What the Express and Fastify middleware share (Shipyard's `api_lock` decorator, seed 002): take
 * a lock computed from the request before the handler runs; when it is busy, answer 409 with the
 * SPEC error body, Shipyard's sentence and `Retry-After`; release when the handler is done, and
 * never let a failed release fail the request (it is logged; the lease expires by its TTL).
 */
import { hostname } from 'node:os';
import type { Lease } from '../engine/lease.js';
import type { Locks } from '../engine/locks.js';
import type { Duration } from '../model/duration.js';
import { HoldfastError, LockBusyError, WaitTimeoutError } from '../model/errors.js';
import type { ResourceInput } from '../model/request.js';
import type { Metadata } from '../model/types.js';

export interface RouteLockOptions<Req> {
  /** The `Locks` object the instances of the API share a store through. */
  locks: Locks;
  /** The key (or resources) to lock for this request, e.g. `() => 'configdocs/update'`. */
  key: (req: Req) => string | readonly ResourceInput[];
  /** Who holds the lock: fixed, or from the request (a user, a correlation id). @default this API instance, `api@HOST:PID` */
  owner?: string | ((req: Req) => string);
  /** Lease length; the lease renews itself while the handler runs. @default the `ttlMs` of `openLocks` (30 s) */
  ttlMs?: Duration;
  /** How long to wait for the lock before answering 409. @default 0 (Shipyard: fail at once) */
  waitMs?: Duration;
  /** Shown to callers blocked by this lease (`message` is their sentence). @default {} */
  metadata?: Metadata | ((req: Req) => Metadata);
  /** Names the lock in the 409 sentence. @default the keys */
  name?: string;
  /** Called when releasing fails (the request has still succeeded). @default logs the error */
  onReleaseError?: (error: unknown, req: Req) => void;
}

/** The answer for a request that could not take its lock. */
export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: { error: Record<string, unknown> };
}

export type Attempt = { lease: Lease; refusal: null } | { lease: null; refusal: Refusal };

const DEFAULT_OWNER = `api@${hostname()}:${process.pid}`;

function keysOf(target: string | readonly ResourceInput[]): string {
  if (typeof target === 'string') return target;
  return target.map((r) => (typeof r === 'string' ? r : r.key)).join(', ');
}

/** Shipyard's sentence: "Blocked by another process: ... Lock expires in not more than N seconds". */
export function blockedSentence(name: string, retryAfterMs: number): string {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return (
    `Blocked by another process: Another process is currently blocking this request with a lock for ${name}. ` +
    `Lock expires in not more than ${seconds} seconds`
  );
}

/** The 409 (or other error) answer for `error`, or null when it is not a holdfast error. */
export function refusalOf(error: unknown, name: string): Refusal | null {
  if (error instanceof LockBusyError || error instanceof WaitTimeoutError) {
    const seconds = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
    return {
      status: 409,
      headers: { 'retry-after': String(seconds) },
      body: { error: { ...error.toJSON(), message: blockedSentence(name, error.retryAfterMs), detail: error.message } },
    };
  }
  if (error instanceof HoldfastError) return { status: error.status, headers: {}, body: { error: error.toJSON() } };
  return null;
}

/** Takes the route's lock for `req`: the lease, or the answer to give instead. Other errors are thrown. */
export async function attempt<Req>(options: RouteLockOptions<Req>, req: Req): Promise<Attempt> {
  const target = options.key(req);
  const owner = typeof options.owner === 'function' ? options.owner(req) : options.owner;
  const metadata = typeof options.metadata === 'function' ? options.metadata(req) : options.metadata;
  try {
    const lease = await options.locks.acquire(typeof target === 'string' ? target : [...target], {
      owner: owner ?? DEFAULT_OWNER,
      ttlMs: options.ttlMs,
      waitMs: options.waitMs ?? 0,
      metadata,
    });
    return { lease, refusal: null };
  } catch (error) {
    const refusal = refusalOf(error, options.name ?? keysOf(target));
    if (refusal === null) throw error;
    return { lease: null, refusal };
  }
}

/**
 * Releases `lease` once; a failure goes to `onReleaseError` (or `log`) and never further: the
 * lease then ends by its TTL, as Shipyard's "Unreleased lock ... will expire" log line says.
 */
export function releaser<Req>(options: RouteLockOptions<Req>, req: Req, lease: Lease, log: (error: unknown, message: string) => void): () => Promise<void> {
  let done: Promise<void> | null = null;
  return () =>
    (done ??= lease.release().then(
      () => undefined,
      (error: unknown) => {
        try {
          if (options.onReleaseError) options.onReleaseError(error, req);
          else log(error, `release of the lock on ${keysOf(lease.keys)} failed; it will expire in not more than ${Math.ceil(lease.ttlMs / 1000)} seconds`);
        } catch {
          // A failing error hook must not fail the request either.
        }
      },
    ));
}
