/**
 * The lease routes: acquire (waiting held open, cancelled when the client goes away), read,
 * renew, release, and release by owner. Owners outside a token's pattern are refused before
 * anything changes; read, renew and release check the owner behind the id first (../ownership.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Granted } from '../../engine/wait.js';
import {
  HoldfastError, InvalidRequestError, LeaseLostError, LockBusyError, NotFoundError, ServerBusyError, StoreUnavailableError, WaitTimeoutError,
} from '../../model/errors.js';
import { validateKey } from '../../model/keys.js';
import { LinkedAbort } from '../../model/linked-abort.js';
import { validateOwner, validateRequest, validateTtl, type RequestInput } from '../../model/request.js';
import { requireOwner } from '../auth.js';
import { actorOf, elapsedMs, idActorOf, principalOf, type RouteSpec, type ServerContext } from '../context.js';
import { sendError } from '../errors.js';
import { authorizeId } from '../ownership.js';
import { iso, leaseJson, shortId } from '../present.js';
import * as S from '../schemas.js';
import { holdLongWait } from '../long-waits.js';
import { enqueue } from './tickets.js';

interface AcquireBody extends RequestInput {
  key?: unknown;
  mode?: unknown;
  limit?: unknown;
  id?: string;
  queue?: boolean;
  waiterTtlMs?: unknown;
}

/** The full request of SPEC section 1, from the body or its single-key shorthand. */
export function requestInput(body: AcquireBody): RequestInput {
  const { key, mode, limit, id: _id, queue: _queue, waiterTtlMs: _waiterTtlMs, ...rest } = body;
  if (key !== undefined) {
    if (rest.resources !== undefined) throw new InvalidRequestError('key', 'give either `key` (with `mode`, `limit`) or `resources`, not both');
    return { ...rest, resources: [limit === undefined ? { key, mode } : { key, mode, limit }] };
  }
  if (mode !== undefined || limit !== undefined) {
    throw new InvalidRequestError(mode !== undefined ? 'mode' : 'limit', 'only with the shorthand `key`; with `resources`, give it inside each resource');
  }
  if (rest.resources === undefined) throw new InvalidRequestError('resources', 'is required (or the shorthand `key`)');
  return rest;
}

/** How long a shed wait is told to wait before it is sent again. */
const SHED_RETRY_AFTER_MS = 1000;

/** Resolves after two turns of the event loop (one promise for both). */
const twoTurns = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

/** The client went away (closed its connection, or cancelled by id). */
class ClientGoneError extends Error {
  constructor(how: string) {
    super(`the client ${how}`);
    this.name = 'ClientGoneError';
  }
}

async function acquire(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const body = request.body as AcquireBody;
  const { request: valid, waitMs } = validateRequest(requestInput(body), body.id);
  requireOwner(principalOf(request), valid.owner, 'acquire');
  if (body.queue === true) return enqueue(ctx, request, reply, valid, waitMs, body.waiterTtlMs);
  if (body.id !== undefined && ctx.waits.has(body.id)) throw new InvalidRequestError('id', 'a request with this id is in progress');
  // The same request sent again after the server cut its wait at maxWaitMs: its place was kept.
  const resumed = body.id === undefined ? null : ctx.parked.take(body.id, valid.owner, valid.resources);

  const heldMs = Math.min(waitMs, ctx.options.maxWaitMs);
  // Shedding: past `maxWaiters` waits held or parked, a new wait is refused before it queues
  // (a client coming back for its parked place already has one; a try-once waits for nothing).
  if (heldMs > 0 && resumed === null && ctx.holding.count + ctx.parked.size >= ctx.options.maxWaiters) {
    ctx.metrics.acquisition('rejected', null);
    throw new ServerBusyError({ maxWaiters: ctx.options.maxWaiters, retryAfterMs: SHED_RETRY_AFTER_MS });
  }
  const raw = reply.raw;
  // A try-once acquire is one store call with nothing to interrupt: no controller or combined
  // signal is made for it (a client gone or a cancel by id meanwhile is seen by `goneReason`
  // after the call, and a lease granted then is released). A wait's signal aborts when the
  // client goes away, when it is cancelled by id and when the server shuts down.
  const gone = heldMs > 0 || resumed !== null ? new LinkedAbort(ctx.shutdown) : null;
  let goneReason: ClientGoneError | null = null;
  const goAway = (error: ClientGoneError): void => {
    goneReason ??= error;
    gone?.abort(error);
  };
  let granted: Granted | null = null;
  let released: Promise<boolean> | null = null;
  /** Who cancelled the wait by id, when it was (recorded if a lease granted meanwhile is released). */
  let cancelledBy: string | undefined;
  /** Releases a lease nobody received (once). */
  const releaseUndelivered = (why: string): Promise<boolean> => {
    if (granted === null) return Promise.resolve(false);
    const { id, fence } = granted.lease;
    released ??= ctx.store.release(id, { by: cancelledBy }).then(
      (ok) => {
        request.log.info({ lease: shortId(id), fence }, `released a lease nobody received: ${why}`);
        return ok;
      },
      (error: unknown) => {
        request.log.warn({ err: error, lease: shortId(id) }, 'release of an undelivered lease failed; it ends by its TTL');
        return false;
      },
    );
    return released;
  };
  // 'close' before the answer was fully written means the client went away: leave the queue,
  // and release what was granted at that moment rather than strand it until its TTL.
  // (The response is this request's own and emits each once: plain listeners, no `once` wrappers.)
  let finished = false;
  raw.on('finish', () => {
    finished = true;
  });
  raw.on('close', () => {
    if (finished) return;
    goAway(new ClientGoneError('closed the connection'));
    void releaseUndelivered('the client disconnected');
  });
  let done: (releasedOne: boolean) => void = () => {};
  if (body.id !== undefined) {
    const settled = new Promise<boolean>((resolve) => (done = resolve));
    ctx.waits.set(body.id, { owner: valid.owner, cancel: (by) => {
        cancelledBy = by;
        goAway(new ClientGoneError('cancelled the request'));
      }, settled });
  }
  if (heldMs > 0) ctx.holding.count++;
  try {
    return await grantAndAnswer();
  } finally {
    if (heldMs > 0) ctx.holding.count--;
    gone?.unlink();
    if (body.id !== undefined) ctx.waits.delete(body.id);
    done(released === null ? false : await released);
  }

  async function grantAndAnswer(): Promise<unknown> {
    const signal = gone?.signal;
    const startedAt = performance.now();
    const startedWall = Date.now();
    const waited = (): number | null => (heldMs > 0 ? performance.now() - startedAt : null);
    try {
      granted = resumed !== null || heldMs < waitMs
        ? await holdLongWait({
          store: ctx.store, router: ctx.router, parked: ctx.parked, id: body.id, request: valid, waitMs, holdMs: heldMs,
          waiterTtlMs: ctx.options.waiterTtlMs, resumed, signal: signal ?? ctx.shutdown, heartbeats: ctx.heartbeats,
        })
        : await ctx.locks.grant(valid.resources, {
          owner: valid.owner, ttlMs: valid.ttlMs, waitMs: heldMs, requestId: valid.requestId ?? undefined,
          metadata: valid.metadata, lockDelayMs: valid.lockDelayMs, signal,
        });
    } catch (error) {
      if (goneReason !== null) {
        ctx.metrics.acquisition('cancelled', waited());
        return reply.code(499).send();
      }
      if (ctx.shutdown.aborted) {
        ctx.metrics.acquisition('cancelled', waited());
        throw new StoreUnavailableError('the server is shutting down; send the request again (to another instance)');
      }
      if (error instanceof LockBusyError) ctx.metrics.acquisition('busy', null);
      else if (error instanceof WaitTimeoutError) ctx.metrics.acquisition('timeout', waited());
      else ctx.metrics.acquisition(error instanceof HoldfastError && error.status < 500 ? 'rejected' : 'error', waited());
      if (error instanceof WaitTimeoutError && heldMs < waitMs) return sendError(reply, error, { maxWaitMs: ctx.options.maxWaitMs });
      throw error;
    }
    const grantMs = elapsedMs(request);
    ctx.metrics.acquisition('granted', waited());
    if (heldMs > 0) ctx.metrics.handoff(granted.lease.resources.map((r) => r.key), startedWall, granted.now);
    // A disconnect that reached this machine before the grant may not have been read yet: let the
    // event loop read it (two turns), so such a grant is released rather than sent into a closed socket.
    await twoTurns();
    const socket = raw.socket;
    if (goneReason !== null || raw.destroyed || socket?.destroyed === true || socket?.readableEnded === true) {
      await releaseUndelivered('the client went away as it was granted');
      return reply.code(499).send();
    }
    if (body.id !== undefined) ctx.recent.add(body.id, granted.lease.id, granted.lease.owner);
    request.log.debug({ lease: shortId(granted.lease.id), fence: granted.lease.fence, owner: granted.lease.owner }, 'granted');
    // How long the server took until the grant: the client anchors the lease's expiry on its own clock with it.
    reply.header('server-timing', `grant;dur=${grantMs.toFixed(1)}`);
    return reply.code(201).send({ lease: leaseJson(granted.lease), now: iso(granted.now) });
  }
}

async function read(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const { id } = request.params as { id: string };
  await authorizeId(ctx, request, id, { action: 'read a lease' });
  const lease = await ctx.store.get(id);
  if (!lease) throw new NotFoundError('The lease');
  return { lease: leaseJson(lease), now: iso(Date.now()) };
}

async function renew(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const { id } = request.params as { id: string };
  const body = (request.body ?? {}) as { ttlMs?: unknown };
  const requested = body.ttlMs === undefined ? undefined : validateTtl(body.ttlMs);
  await authorizeId(ctx, request, id, { action: 'renew a lease', ownerOnly: true });
  // Without a ttlMs the lease keeps its own (read only then: one store call when it is given).
  const ttlMs = requested ?? (await ctx.store.get(id))?.ttlMs ?? validateTtl(undefined);
  const outcome = await ctx.store.renew(id, ttlMs);
  if (outcome.status === 'lost') throw new LeaseLostError(id);
  if (outcome.status === 'unknown') throw new NotFoundError('The lease');
  reply.header('server-timing', `grant;dur=${elapsedMs(request).toFixed(1)}`);
  return { lease: leaseJson(outcome.lease), now: iso(outcome.now) };
}

async function release(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const { id } = request.params as { id: string };
  await authorizeId(ctx, request, id, { action: 'release a lease' });
  const query = request.query as { by?: string };
  const by = idActorOf(request, query.by === undefined ? undefined : validateOwner(query.by, 'by'));
  // One store call: the release answers false for an id that ended or never was.
  const released = await ctx.store.release(id, { by });
  if (released) request.log.debug({ lease: shortId(id) }, 'released');
  return { released };
}

async function releaseOwner(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const params = request.params as { owner: string };
  const query = request.query as { key?: string; by?: string };
  const owner = validateOwner(params.owner);
  const key = query.key === undefined ? undefined : validateKey(query.key, 'key');
  const by = query.by === undefined ? undefined : validateOwner(query.by, 'by');
  const principal = principalOf(request);
  if (!principal.admin) requireOwner(principal, owner, 'release the leases');
  const released = await ctx.store.releaseOwner(owner, { key, by: actorOf(request, by) });
  request.log.info({ owner, key, released }, 'released by owner');
  return { released };
}

export function leaseRoutes(ctx: ServerContext): RouteSpec[] {
  const errors = { '4XX': S.errorAnswer, '5XX': S.errorAnswer };
  return [
    {
      method: 'POST', url: '/v1/leases', operationId: 'acquire', access: 'token',
      summary: 'Acquire: the request of SPEC section 1 or the shorthand { key, mode, limit, owner, ... }; waits up to waitMs',
      schema: { body: S.acquireBody, response: { 201: S.leaseAnswer, 202: S.queuedAnswer, ...errors } },
      handler: (request, reply) => acquire(ctx, request, reply),
    },
    {
      method: 'GET', url: '/v1/leases/:id', operationId: 'getLease', access: 'token', summary: 'Read a live lease',
      schema: { params: S.leaseIdParams, response: { 200: S.leaseAnswer, ...errors } },
      handler: (request) => read(ctx, request),
    },
    {
      method: 'POST', url: '/v1/leases/:id/renew', operationId: 'renew', access: 'token', summary: 'Extend a lease from now (410 when it ended)',
      schema: { params: S.leaseIdParams, body: S.renewBody, response: { 200: S.leaseAnswer, ...errors } },
      handler: (request, reply) => renew(ctx, request, reply),
    },
    {
      method: 'DELETE', url: '/v1/leases/:id', operationId: 'release', access: 'token', summary: 'Release a lease (false when it had ended)',
      schema: { params: S.leaseIdParams, querystring: S.endQuery, response: { 200: S.releasedAnswer, ...errors } },
      handler: (request) => release(ctx, request),
    },
    {
      method: 'DELETE', url: '/v1/owners/:owner/leases', operationId: 'releaseOwner', access: 'token',
      summary: 'Release every lease of an owner (with key: those holding that key)',
      schema: { params: S.ownerParams, querystring: S.ownerQuery, response: { 200: S.countAnswer, ...errors } },
      handler: (request) => releaseOwner(ctx, request),
    },
  ];
}
