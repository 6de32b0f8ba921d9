/**
 * Fastify hooks that lock a route (Shipyard's `api_lock`, seed 002):
 *
 *   const lock = fastifyLock({ locks, key: () => 'configdocs/update', ttlMs: '60s' });
 *   app.post('/configdocs/:name', { ...lock.hooks }, async (request) => { lock.leaseOf(request)?.fence; ... });
 *
 * `preHandler` takes the lock; when it is busy the route answers 409 with the SPEC error body,
 * Shipyard's sentence ("Blocked by another process: ... Lock expires in not more than N seconds")
 * and `Retry-After`, and the handler does not run. `onSend` releases the lock just before the
 * response goes out (a client calling again right after the answer finds it free); a connection
 * closed earlier releases it too. A failed release is logged (`request.log`) and never fails the
 * request.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Lease } from '../engine/lease.js';
import { attempt, releaser, type RouteLockOptions } from './route-lock.js';

export type FastifyLockOptions = RouteLockOptions<FastifyRequest>;

export interface FastifyLock {
  /** Spread into the route options: `{ preHandler, onSend }`. */
  readonly hooks: {
    preHandler: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;
    onSend: <P>(request: FastifyRequest, reply: FastifyReply, payload: P) => Promise<P>;
  };
  /** The lease the request holds while its handler runs (its `signal` aborts if it is lost). */
  leaseOf(request: FastifyRequest): Lease | undefined;
}

export function fastifyLock(options: FastifyLockOptions): FastifyLock {
  const held = new WeakMap<FastifyRequest, { lease: Lease; release: () => Promise<void> }>();
  const release = async (request: FastifyRequest): Promise<void> => {
    await held.get(request)?.release();
  };
  return {
    hooks: {
      async preHandler(request, reply) {
        const { lease, refusal } = await attempt(options, request);
        if (refusal) {
          // Returning the reply stops the request here: the handler does not run.
          return reply.code(refusal.status).headers(refusal.headers).send(refusal.body);
        }
        const log = (error: unknown, message: string): void => request.log.error({ err: error }, message);
        held.set(request, { lease, release: releaser(options, request, lease, log) });
        reply.raw.once('close', () => void release(request));
        return undefined;
      },
      async onSend(request, _reply, payload) {
        await release(request);
        return payload;
      },
    },
    leaseOf: (request) => held.get(request)?.lease,
  };
}
