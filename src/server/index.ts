/**
 * The HTTP server of holdfast: `buildServer` (not listening: for tests and embedding) and
 * `startServer` (listening, with graceful shutdown). Fastify and prom-client load on first use,
 * so importing the library does not load them.
 */
import type { FastifyInstance } from 'fastify';
import type { ServerOptions } from './options.js';
import type { RunningServer, StartOptions } from './start.js';

export { SERVER_DEFAULTS, type ServerOptions } from './options.js';
export type { StartOptions, RunningServer } from './start.js';
export type { TokenConfig } from './auth.js';

/** Builds the server over a store (not listening). Close it with `app.close()`. */
export async function buildServer(options: ServerOptions = {}): Promise<FastifyInstance> {
  const { buildServer: build } = await import('./server.js');
  return build(options);
}

/** Builds the server and listens; SIGTERM/SIGINT shut it down gracefully. */
export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  const { startServer: start } = await import('./start.js');
  return start(options);
}
