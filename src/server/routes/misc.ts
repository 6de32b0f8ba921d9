/**
 * Routes around the API: `/healthz` (the process is up), `/readyz` (the store answers),
 * `/metrics` (Prometheus), `/openapi.json`, `/v1/whoami` (the token's name and admin right, for the
 * dashboard), and the dashboard (`/`, `/app.js` and its modules `/ui/NAME.js|css` from `web/`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NotFoundError, StoreUnavailableError } from '../../model/errors.js';
import { principalOf, type RouteSpec, type ServerContext } from '../context.js';
import { openapiDocument } from '../openapi.js';
import * as S from '../schemas.js';

const PACKAGE_VERSION = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

const DASHBOARD_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

function staticFile(root: string, name: string, type: string): (reply: FastifyReply) => FastifyReply {
  let body: Buffer | null = null;
  return (reply) => {
    try {
      body ??= readFileSync(join(root, name));
    } catch {
      throw new NotFoundError(`The dashboard file ${name}`);
    }
    return reply.type(type).header('content-security-policy', DASHBOARD_CSP).header('cache-control', 'no-cache').send(body);
  };
}

/** The dashboard's modules: `web/ui/NAME.js` and `web/ui/NAME.css`, nothing else. */
const UI_FILE = /^([a-z][a-z0-9-]{0,63})\.(js|css)$/;
const UI_TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

function uiFiles(root: string): (request: FastifyRequest, reply: FastifyReply) => FastifyReply {
  const served = new Map<string, (reply: FastifyReply) => FastifyReply>();
  return (request, reply) => {
    const { name } = request.params as { name: string };
    const match = UI_FILE.exec(name);
    if (!match) throw new NotFoundError(`The dashboard file ${JSON.stringify(name)}`);
    const known = served.get(name);
    if (known !== undefined) return known(reply);
    const send = staticFile(join(root, 'ui'), name, UI_TYPES[match[2]!]!);
    const sent = send(reply);
    served.set(name, send); // only files that exist are remembered
    return sent;
  };
}

/** A probe for `/readyz`: a read the store must answer, over no real key. */
async function probe(ctx: ServerContext): Promise<void> {
  try {
    // A well-formed id that no lease has: a cheap indexed read on every store.
    await ctx.store.get('holdfast-readyz-probe-0');
  } catch (error) {
    ctx.metrics.storeError();
    throw error instanceof StoreUnavailableError ? error : new StoreUnavailableError(error instanceof Error ? error.message : String(error));
  }
}

export function miscRoutes(ctx: ServerContext, all: () => readonly RouteSpec[]): RouteSpec[] {
  const index = staticFile(ctx.options.webRoot, 'index.html', 'text/html; charset=utf-8');
  const app = staticFile(ctx.options.webRoot, 'app.js', 'text/javascript; charset=utf-8');
  const ui = uiFiles(ctx.options.webRoot);
  let openapi: Record<string, unknown> | null = null;
  return [
    {
      method: 'GET', url: '/healthz', operationId: 'health', access: 'none', summary: 'The process is up',
      schema: { response: { 200: S.statusAnswer } },
      handler: async () => ({ status: 'ok' }),
    },
    {
      method: 'GET', url: '/readyz', operationId: 'ready', access: 'none', summary: 'The store can be reached',
      schema: { response: { 200: S.statusAnswer, '5XX': S.errorAnswer } },
      handler: async () => {
        await probe(ctx);
        return { status: 'ready', store: { kind: ctx.store.info.kind, durable: ctx.store.info.durable } };
      },
    },
    {
      method: 'GET', url: '/v1/info', operationId: 'info', access: 'none', summary: 'The server: version, its store, its longest held wait',
      schema: { response: { 200: S.infoAnswer } },
      handler: async () => ({
        version: PACKAGE_VERSION,
        store: { kind: ctx.store.info.kind, durable: ctx.store.info.durable },
        maxWaitMs: ctx.options.maxWaitMs,
        tokens: ctx.options.tokens !== null,
      }),
    },
    {
      method: 'GET', url: '/metrics', operationId: 'metrics', access: 'none', produces: 'text/plain', summary: 'Prometheus metrics',
      schema: {},
      handler: async (_request, reply) => {
        const text = await ctx.metrics.registry.metrics();
        return reply.type(ctx.metrics.registry.contentType).send(text);
      },
    },
    {
      method: 'GET', url: '/openapi.json', operationId: 'openapi', access: 'none', summary: 'This document',
      schema: {},
      handler: async () => (openapi ??= openapiDocument(all(), PACKAGE_VERSION)),
    },
    {
      method: 'GET', url: '/', operationId: 'dashboard', access: 'none', produces: 'text/html', summary: 'The dashboard',
      schema: {},
      handler: async (_request, reply) => index(reply),
    },
    {
      method: 'GET', url: '/app.js', operationId: 'dashboardScript', access: 'none', produces: 'text/javascript', summary: 'The dashboard script',
      schema: {},
      handler: async (_request, reply) => app(reply),
    },
    {
      method: 'GET', url: '/ui/:name', operationId: 'dashboardModule', access: 'none', produces: 'text/javascript', summary: 'A module of the dashboard (script or style sheet)',
      schema: { params: S.uiFileParams },
      handler: async (request, reply) => ui(request, reply),
    },
    {
      method: 'GET', url: '/v1/whoami', operationId: 'whoami', access: 'token', summary: 'The token of the request: its name and whether it is an admin (the dashboard shows admin actions by it)',
      schema: { response: { 200: S.whoamiAnswer, '4XX': S.errorAnswer } },
      handler: async (request) => {
        const principal = principalOf(request);
        return { name: principal.name, admin: principal.admin, tokens: ctx.options.tokens !== null };
      },
    },
  ];
}
