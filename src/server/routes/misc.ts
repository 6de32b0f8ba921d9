/**
 * Routes around the API: `/healthz` (the process is up), `/readyz` (the store answers),
 * `/metrics` (Prometheus), `/openapi.json`, and the dashboard (`/`, `/app.js` from `web/`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply } from 'fastify';
import { NotFoundError, StoreUnavailableError } from '../../model/errors.js';
import type { RouteSpec, ServerContext } from '../context.js';
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
  ];
}
