/**
 * Express middleware that locks a route (Shipyard's `api_lock`, seed 002):
 *
 *   app.post('/configdocs/:name', expressLock({ locks, key: () => 'configdocs/update', ttlMs: '60s' }), handler);
 *
 * While another process (another instance of the API) holds the key, the route answers 409 with
 * `{ error: { code: 'LOCK_BUSY', message: 'Blocked by another process: ... Lock expires in not
 * more than N seconds', holders, retryAfterMs } }` and `Retry-After: N`. Otherwise the handler
 * runs with the lease in `res.locals.lease`; the lock is released just before the response is
 * sent (so a client that calls again right after the answer finds it free), or when the
 * connection closes first. A failed release is logged and never fails the request.
 *
 * Only structural types are used: Express is not a dependency.
 */
import type { Lease } from '../engine/lease.js';
import { attempt, releaser, type RouteLockOptions } from './route-lock.js';

/** The parts of Express's `Response` the middleware uses. */
export interface ExpressResponseLike {
  status(code: number): unknown;
  setHeader(name: string, value: string): unknown;
  json(body: unknown): unknown;
  end(...args: never[]): unknown;
  once(event: 'close', listener: () => void): unknown;
  locals?: Record<string, unknown>;
}

export type ExpressNext = (error?: unknown) => void;

export interface ExpressLockOptions<Req> extends RouteLockOptions<Req> {
  /** Where release failures are logged when `onReleaseError` is not given. @default console.error */
  logger?: { error(object: unknown, message?: string): void };
}

export function expressLock<Req = unknown, Res extends ExpressResponseLike = ExpressResponseLike>(
  options: ExpressLockOptions<Req>,
): (req: Req, res: Res, next: ExpressNext) => void {
  const log = (error: unknown, message: string): void => {
    if (options.logger) options.logger.error({ err: error }, message);
    else console.error(`holdfast: ${message}:`, error);
  };
  return (req, res, next) => {
    attempt(options, req).then(
      ({ lease, refusal }) => {
        if (refusal) {
          for (const [name, value] of Object.entries(refusal.headers)) res.setHeader(name, value);
          res.status(refusal.status);
          res.json(refusal.body);
          return;
        }
        hold(res, lease, releaser(options, req, lease, log));
        next();
      },
      (error: unknown) => next(error),
    );
  };
}

/** Keeps the lease until the response is sent: `end` waits for the release, then sends. */
function hold(res: ExpressResponseLike, lease: Lease, release: () => Promise<void>): void {
  if (res.locals) res.locals['lease'] = lease;
  const end = res.end as (...args: unknown[]) => unknown;
  let ending = false;
  (res as unknown as { end: (...args: unknown[]) => unknown }).end = function patchedEnd(this: unknown, ...args: unknown[]) {
    if (ending) return end.apply(res, args);
    ending = true;
    void release().then(() => end.apply(res, args));
    return res;
  };
  res.once('close', () => void release());
}
