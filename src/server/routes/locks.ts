/** The lock-table routes: held locks and waiters, admin force-release of a key, history. */
import type { FastifyRequest } from 'fastify';
import { validateKey } from '../../model/keys.js';
import { validateOwner } from '../../model/request.js';
import { requireAdmin } from '../auth.js';
import { actorOf, principalOf, type RouteSpec, type ServerContext } from '../context.js';
import { iso } from '../present.js';
import * as S from '../schemas.js';

async function list(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const { prefix = '' } = request.query as { prefix?: string };
  principalOf(request);
  const table = await ctx.store.list({ prefix });
  return { ...table, now: iso(Date.now()) };
}

async function force(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  // The key arrives URL-encoded in one segment or as the path's tail; the router decodes both.
  const key = validateKey((request.params as { '*': string })['*'], 'key');
  const { by } = request.query as { by?: string };
  const actor = by === undefined ? undefined : validateOwner(by, 'by');
  requireAdmin(principalOf(request), 'force-release a key');
  const released = await ctx.store.forceRelease(key, { by: actorOf(request, actor) });
  request.log.warn({ key, released }, 'force-released');
  return { released };
}

async function history(ctx: ServerContext, request: FastifyRequest): Promise<unknown> {
  const query = request.query as { key?: string; owner?: string; limit?: string; beforeId?: string };
  principalOf(request);
  const events = await ctx.locks.history({
    key: query.key === undefined ? undefined : validateKey(query.key, 'key'),
    owner: query.owner === undefined ? undefined : validateOwner(query.owner),
    limit: query.limit === undefined ? undefined : Number(query.limit),
    beforeId: query.beforeId === undefined ? undefined : Number(query.beforeId),
  });
  return { events };
}

export function lockRoutes(ctx: ServerContext): RouteSpec[] {
  const errors = { '4XX': S.errorAnswer, '5XX': S.errorAnswer };
  return [
    {
      method: 'GET', url: '/v1/locks', operationId: 'list', access: 'token', summary: 'Held locks and queued waiters with their positions',
      schema: { querystring: S.listQuery, response: { 200: S.listAnswer, ...errors } },
      handler: (request) => list(ctx, request),
    },
    {
      method: 'DELETE', url: '/v1/locks/*', operationId: 'forceRelease', access: 'token',
      summary: 'Admin: end every lease on a key (the key URL-encoded, or as the path tail)',
      schema: { params: S.keyParams, querystring: S.forceQuery, response: { 200: S.countAnswer, ...errors } },
      handler: (request) => force(ctx, request),
    },
    {
      method: 'GET', url: '/v1/history', operationId: 'history', access: 'token', summary: 'Past lease events, newest first',
      schema: { querystring: S.historyQuery, response: { 200: S.historyAnswer, ...errors } },
      handler: (request) => history(ctx, request),
    },
  ];
}
