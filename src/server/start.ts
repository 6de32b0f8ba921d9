/**
 * `startServer(options)`: builds the server, refuses to listen beyond loopback without tokens,
 * listens, and shuts down gracefully on SIGTERM/SIGINT: stop accepting connections, answer the
 * requests in flight (waits end with 503), close event streams and the store. A second signal
 * exits at once.
 */
import type { FastifyInstance } from 'fastify';
import { InvalidRequestError } from '../model/errors.js';
import { isLoopback, loadTokens } from './auth.js';
import { LISTEN_BACKLOG, SERVER_DEFAULTS, type ServerOptions } from './options.js';
import { buildServer } from './server.js';

export interface StartOptions extends ServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 7070 */
  port?: number;
  /** Signals that shut the server down gracefully; `[]` installs no handler. @default ['SIGTERM', 'SIGINT'] */
  signals?: readonly NodeJS.Signals[];
}

export interface RunningServer {
  app: FastifyInstance;
  /** `http://host:port` */
  url: string;
  /** Graceful shutdown (what the signals do). */
  close(): Promise<void>;
  /** Settles when `close()` (or a signal) has shut the server down. */
  closed: Promise<void>;
}

export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  const { host = SERVER_DEFAULTS.host, port = SERVER_DEFAULTS.port, signals = ['SIGTERM', 'SIGINT'], ...rest } = options;
  if (typeof host !== 'string' || host === '') throw new InvalidRequestError('host', 'expected a host name or address');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidRequestError('port', `expected an integer 0..65535, got ${String(port)}`);
  }
  // The tokens file is read once, here; buildServer validates what it holds.
  const tokens = typeof rest.tokens === 'string' ? loadTokens(rest.tokens) : rest.tokens;
  if (tokens === undefined && !isLoopback(host)) {
    throw new InvalidRequestError(
      'host',
      `refusing to listen on ${host} without tokens: anyone who can reach it could take and release every lock. ` +
        'Give a tokens file (--tokens FILE or HOLDFAST_TOKENS), or listen on 127.0.0.1',
    );
  }
  const app = await buildServer({ ...rest, tokens });
  let closing: Promise<void> | null = null;
  let settle: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const handlers = new Map<NodeJS.Signals, () => void>();
  const close = (): Promise<void> => {
    closing ??= (async () => {
      try {
        await app.close();
      } finally {
        for (const [signal, handler] of handlers) process.off(signal, handler);
        settle();
      }
    })();
    return closing;
  };
  try {
    await app.listen({ host, port, backlog: LISTEN_BACKLOG });
  } catch (error) {
    await app.close();
    throw error;
  }
  for (const signal of signals) {
    const handler = (): void => {
      if (closing !== null) {
        app.log.warn(`${signal} again: exiting now`);
        process.exit(1);
      }
      app.log.info(`${signal}: shutting down (answering requests in flight)`);
      close().then(
        () => app.log.info('closed'),
        (error: unknown) => {
          app.log.error({ err: error }, 'shutdown failed');
          process.exitCode = 1;
        },
      );
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address !== null ? address : { address: host, port };
  const shown = bound.address.includes(':') ? `[${bound.address}]` : bound.address;
  return { app, url: `http://${shown}:${bound.port}`, close, closed };
}
