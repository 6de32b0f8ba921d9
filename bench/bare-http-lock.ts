/**
 * The anchor of the `http` suite (issue 17): the least a lock server over HTTP can do. A bare
 * Fastify (no logger, no auth, no schemas, no web guard) with a `Map` of exclusive leases,
 * answering the routes the holdfast http client uses for a try-acquire + release pair in the same
 * JSON shapes, so the same client (the same load generator) drives it and holdfast:
 *
 *   GET    /v1/info          -> 200 { version, store: { kind: 'memory', durable: false } }
 *   POST   /v1/leases        -> 201 { lease, now } | 409 { error: { code: 'LOCK_BUSY', ... } }
 *          (body: the client's request; only `resources[*].key`, `owner`, `ttlMs`, `id` are read)
 *   DELETE /v1/leases/:id    -> 200 { released }
 *
 * What it leaves out is what holdfast's server adds per request: validation of every field,
 * token and origin checks, the request log, fences and history in the store, queueing, renewal.
 */
import Fastify from 'fastify';
import { newLeaseId } from '../src/model/request.js';
import { leaseJson } from '../src/server/present.js';
import type { LeaseRecord, Resource } from '../src/model/types.js';

export interface BareLockServer {
  url: string;
  close(): Promise<void>;
}

interface PairBody {
  id?: string;
  owner: string;
  resources: Resource[];
  ttlMs?: number;
}

export async function startBareLockServer(): Promise<BareLockServer> {
  const byKey = new Map<string, LeaseRecord>();
  const byId = new Map<string, LeaseRecord>();
  let fence = 0;
  const app = Fastify({ logger: false });

  app.get('/v1/info', async () => ({ version: 'bare', store: { kind: 'memory', durable: false } }));

  app.post('/v1/leases', async (request, reply) => {
    const body = request.body as PairBody;
    const now = Date.now();
    for (const { key } of body.resources) {
      const held = byKey.get(key);
      if (held !== undefined && held.expiresAt > now) {
        return reply.code(409).send({
          error: { code: 'LOCK_BUSY', message: `${key} is held`, holders: [], retryAfterMs: held.expiresAt - now, now: new Date(now).toISOString() },
        });
      }
    }
    const ttlMs = body.ttlMs ?? 30_000;
    const lease: LeaseRecord = {
      id: body.id ?? newLeaseId(), owner: body.owner, resources: body.resources, fence: ++fence,
      acquiredAt: now, expiresAt: now + ttlMs, ttlMs, requestId: null, metadata: {}, lockDelayMs: 0,
    };
    for (const { key } of body.resources) byKey.set(key, lease);
    byId.set(lease.id, lease);
    return reply.code(201).send({ lease: leaseJson(lease), now: new Date(now).toISOString() });
  });

  app.delete('/v1/leases/:id', async (request) => {
    const { id } = request.params as { id: string };
    const lease = byId.get(id);
    if (lease === undefined) return { released: false };
    byId.delete(id);
    for (const { key } of lease.resources) if (byKey.get(key) === lease) byKey.delete(key);
    return { released: true };
  });

  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: address, close: () => app.close() };
}
