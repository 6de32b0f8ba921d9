/** `holdfast serve`: the HTTP API and the dashboard over a store, until SIGTERM/SIGINT. */
import { EXIT, UsageError, parseFlags, type CliCommand, type CliIO } from '../command.js';
import { duration, exitFor } from '../flags.js';
import { SERVER_DEFAULTS } from '../../server/options.js';
import { startServer } from '../../server/index.js';

const USAGE = `Usage: holdfast serve [--store URL] [--host H] [--port P] [--tokens FILE]

Serves the HTTP API (/v1/...), the dashboard (/), /metrics, /healthz, /readyz and /openapi.json.
SIGTERM or SIGINT stops accepting connections, answers the requests in flight and closes the
store; leases stay held for their clients, who renew and release them by id.

  --store URL       memory:, sqlite:PATH, postgres://... (env HOLDFAST_STORE; default ${SERVER_DEFAULTS.store})
  --host H          address to listen on (env HOLDFAST_HOST; default ${SERVER_DEFAULTS.host})
  --port P          port, 0 for any free one (env HOLDFAST_PORT; default ${SERVER_DEFAULTS.port})
  --tokens FILE     bearer tokens, JSON [{ "name", "token", "owners", "admin" }] (env HOLDFAST_TOKENS).
                    Without tokens the server listens on loopback only.
  --max-wait D      longest wait held open for one request (default 15m; longer waits are sent again)
  --log-level L     fatal, error, warn, info, debug, trace or silent (env HOLDFAST_LOG_LEVEL; default info)

Examples:
  holdfast serve
  holdfast serve --store postgres://holdfast@db/locks --host 0.0.0.0 --tokens /etc/holdfast/tokens.json`;

function portOf(value: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port > 65535) throw new UsageError(`--port: expected 0..65535, got ${JSON.stringify(value)}`);
  return port;
}

/** The store URL as it may be printed: without a password. */
function shownStore(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]+):[^@/]*@/i, '$1:***@');
}

export const serveCommand: CliCommand = {
  name: 'serve',
  summary: 'serve the HTTP API and the dashboard',
  usage: USAGE,
  async run(argv: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseFlags(argv, {
      store: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      tokens: { type: 'string' },
      'max-wait': { type: 'string' },
      'log-level': { type: 'string' },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const env = io.env;
    const store = values.store ?? (env['HOLDFAST_STORE'] || SERVER_DEFAULTS.store);
    const host = values.host ?? (env['HOLDFAST_HOST'] || SERVER_DEFAULTS.host);
    const portText = values.port ?? env['HOLDFAST_PORT'];
    const port = portText === undefined || portText === '' ? SERVER_DEFAULTS.port : portOf(portText);
    const tokens = values.tokens ?? (env['HOLDFAST_TOKENS'] || undefined);
    const maxWaitMs = duration(values['max-wait'], 'max-wait');
    const logLevel = values['log-level'] ?? (env['HOLDFAST_LOG_LEVEL'] || undefined);
    let server;
    try {
      server = await startServer({ store, host, port, tokens, maxWaitMs, logLevel });
    } catch (error) {
      const { code, message } = exitFor(error);
      io.stderr.write(`holdfast serve: ${message}\n`);
      return code;
    }
    io.stderr.write(
      `holdfast: serving ${server.url} (dashboard ${server.url}/) over ${shownStore(store)}` +
        `${tokens === undefined ? ', no tokens: loopback only' : ''}\n`,
    );
    await server.closed;
    return EXIT.ok;
  },
};
