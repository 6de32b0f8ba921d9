/**
 * Tickets: the store's waiting protocol over HTTP, and the cancel of a held-open wait.
 *
 * - `POST /v1/leases` with `queue: true`: a request that has to wait is queued and answered 202
 *   `{ ticket, holders, retryAfterMs, nextCheckMs, now }` at once. The client polls
 *   `POST /v1/tickets/{ticket}/poll` (granted, queued or gone) at least every `waiterTtlMs / 3`;
 *   a ticket not polled for `waiterTtlMs` loses its place (the waiter died).
 * - `DELETE /v1/tickets/{id}`: ends a wait. For a held-open `POST /v1/leases` that gave this `id`,
 *   the server leaves the queue (releasing a lease granted at that moment) and answers once that
 *   is done; for a request whose wait the server cut at `maxWaitMs` and keeps queued for the
 *   client's next call (see ../long-waits.ts), it leaves the queue; if that request was answered a
 *   moment ago (the answer crossed the cancel), the lease it was granted is released; for a queued
 *   ticket, it leaves the queue. `{ released }` says whether a lease that
 *   was granted meanwhile was released.
 * Only a token that may act for the ticket's owner (or an admin) polls or cancels it: see
 * ../ownership.ts, also for tickets queued through another server sharing the store.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LockBusyError } from '../../model/errors.js';
import { LIMITS, validateOwner } from '../../model/request.js';
import { parseDurationIn } from '../../model/duration.js';
import type { LockRequest } from '../../model/types.js';
import { idActorOf, type RouteSpec, type ServerContext } from '../context.js';
import { authorizeId } from '../ownership.js';
import { iso, leaseJson, shortId } from '../present.js';
import * as S from '../schemas.js';

/** `POST /v1/leases` with `queue: true`. */
export async function enqueue(
  ctx: ServerContext, request: FastifyRequest, reply: FastifyReply, valid: LockRequest, waitMs: number, waiterTtl: unknown,
): Promise<unknown> {
  const waiterTtlMs = waiterTtl === undefined ? ctx.options.waiterTtlMs : parseDurationIn(waiterTtl, 'waiterTtlMs', 300, 600_000);
  const storeWaitMs = Math.min(waitMs, LIMITS.maxWaitMs);
  // Known before the store queues it, so its first poll is authorized without a store call.
  ctx.tickets.add(valid.id, valid.owner, storeWaitMs + waiterTtlMs + 60_000);
  const outcome = await ctx.store.acquire(valid, { waitMs: storeWaitMs, waiterTtlMs });
  if (outcome.status === 'busy') {
    ctx.metrics.acquisition('busy', null);
    throw new LockBusyError(outcome);
  }
  if (outcome.status === 'granted') {
    ctx.metrics.acquisition('granted', null);
    request.log.debug({ lease: shortId(outcome.lease.id), fence: outcome.lease.fence, owner: outcome.lease.owner }, 'granted');
    return reply.code(201).send({ lease: leaseJson(outcome.lease), now: iso(outcome.now) });
  }
  if (outcome.ticket !== valid.id) ctx.tickets.add(outcome.ticket, valid.owner, storeWaitMs + waiterTtlMs + 60_000);
  const { status: _status, ...queued } = outcome;
  return reply.code(202).send({ ...queued, now: iso(outcome.now) });
}

async function poll(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const { id } = request.params as { id: string };
  await authorizeId(ctx, request, id, { action: 'poll a ticket', refuseUnknown: true });
  const outcome = await ctx.store.poll(id);
  if (outcome.status === 'granted') return { status: 'granted', lease: leaseJson(outcome.lease), now: iso(outcome.now) };
  return { ...outcome, now: iso(outcome.now) };
}

async function cancel(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const { id } = request.params as { id: string };
  await authorizeId(ctx, request, id, { action: 'cancel a request', refuseUnknown: true });
  const query = request.query as { by?: string };
  const by = idActorOf(request, query.by === undefined ? undefined : validateOwner(query.by, 'by'));
  const wait = ctx.waits.get(id);
  if (wait) {
    wait.cancel(by);
    return { released: await wait.settled };
  }
  if (ctx.parked.ownerOf(id) !== null) return { released: await ctx.parked.cancel(id, by) };
  const recent = ctx.recent.take(id);
  if (recent) return { released: await ctx.store.release(recent.leaseId, { by }) };
  return { released: await ctx.store.cancel(id, { by }) };
}

export function ticketRoutes(ctx: ServerContext): RouteSpec[] {
  const errors = { '4XX': S.errorAnswer, '5XX': S.errorAnswer };
  return [
    {
      method: 'POST', url: '/v1/tickets/:id/poll', operationId: 'poll', access: 'token',
      summary: 'A queued ticket (POST /v1/leases with queue): granted, still queued (its heartbeat), or gone',
      schema: { params: S.ticketParams, response: { 200: S.pollAnswer, ...errors } },
      handler: (request) => poll(ctx, request),
    },
    {
      method: 'DELETE', url: '/v1/tickets/:id', operationId: 'cancel', access: 'token',
      summary: 'End a wait by its id: leave the queue; a lease granted meanwhile is released',
      schema: { params: S.ticketParams, querystring: S.endQuery, response: { 200: S.releasedAnswer, ...errors } },
      handler: (request) => cancel(ctx, request),
    },
  ];
}
