/**
 * `GET /v1/events`: server-sent events of the store's changes (acquired, released, expired,
 * forced, waiting, timed-out, left). Each event has an `id:`; a client reconnecting with
 * `Last-Event-ID` gets the events it missed from the ring buffer, or a `reset` event when they
 * are gone (reload the table). Heartbeats are SSE comments. Streams end when the server shuts down.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { principalOf, type RouteSpec, type ServerContext } from '../context.js';
import { matchesPrefix, sseFrame, type HubEvent } from '../events.js';
import * as S from '../schemas.js';

async function events(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  principalOf(request);
  const { prefix = '' } = request.query as { prefix?: string };
  const lastHeader = request.headers['last-event-id'];
  const lastId = Array.isArray(lastHeader) ? lastHeader[0] : lastHeader;
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': String(request.id),
  });
  const send = (event: HubEvent): void => {
    if (matchesPrefix(event, prefix)) raw.write(sseFrame(event));
  };
  raw.write('retry: 2000\n: connected\n\n');
  if (lastId !== undefined && lastId !== '') {
    const missed = ctx.hub.since(lastId);
    if (missed === null) send(ctx.hub.reset());
    else missed.forEach(send);
  }
  const unsubscribe = ctx.hub.subscribe(send);
  const heartbeat = setInterval(() => raw.write(': heartbeat\n\n'), ctx.options.heartbeatMs);
  heartbeat.unref();
  const end = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
    ctx.shutdown.removeEventListener('abort', end);
    if (!raw.writableEnded) raw.end();
  };
  raw.once('close', end);
  ctx.shutdown.addEventListener('abort', end, { once: true });
  if (ctx.shutdown.aborted) end();
}

export function streamRoutes(ctx: ServerContext): RouteSpec[] {
  return [
    {
      method: 'GET', url: '/v1/events', operationId: 'events', access: 'token', produces: 'text/event-stream',
      summary: 'Server-sent events of lock changes; resume with Last-Event-ID',
      schema: { querystring: S.eventsQuery, response: { '4XX': S.errorAnswer } },
      handler: (request, reply) => events(ctx, request, reply),
    },
  ];
}
