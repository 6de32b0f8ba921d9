/** Options of `buildServer` and `startServer`, with their defaults in one frozen object. */
import { fileURLToPath } from 'node:url';
import { parseDurationIn, typeName, type Duration } from '../model/duration.js';
import { InvalidRequestError } from '../model/errors.js';
import { LIMITS } from '../model/request.js';
import type { LockStore } from '../stores/store.js';
import { loadTokens, TokenTable, type TokenConfig } from './auth.js';
import { resolveOrigins } from './web-guard.js';

export interface ServerOptions {
  /**
   * The store: a URL (`memory:`, `sqlite:PATH`, `postgres://...`) the server opens and closes, or
   * a store object the caller keeps (the server never closes it).
   * @default 'sqlite:./holdfast.db'
   */
  store?: string | LockStore;
  /** Options for the store opened from a URL. @default {} */
  storeOptions?: Record<string, unknown>;
  /**
   * Bearer tokens: the configs, a path to a JSON file of them, or the JSON itself. Without tokens
   * every request is allowed, so `startServer` listens on loopback only.
   * @default undefined
   */
  tokens?: readonly TokenConfig[] | string;
  /** How long the server holds a waiting request open; longer waits answer WAIT_TIMEOUT with `maxWaitMs`, to send again. @default 900000 (15 min) */
  maxWaitMs?: Duration;
  /** Largest request body in bytes. @default 262144 (256 KiB) */
  bodyLimit?: number;
  /** Time allowed to receive a whole request (headers and body). @default 30000 */
  requestTimeoutMs?: Duration;
  /** An idle keep-alive connection is closed after this long. @default 72000 */
  keepAliveTimeoutMs?: Duration;
  /** How often the server sweeps the store, so expiries are noticed and announced promptly. @default 1000 */
  sweepIntervalMs?: Duration;
  /** Heartbeat comments on `/v1/events` streams. @default 15000 */
  heartbeatMs?: Duration;
  /** Events kept for clients that reconnect with `Last-Event-ID`. @default 1000 */
  eventBufferSize?: number;
  /**
   * While somebody follows `/v1/events`, how often the server reads the store's history for what
   * other processes sharing the store did (their acquires, releases, expiries), to stream it too.
   * Not done for the memory store. @default 1000
   */
  followIntervalMs?: Duration;
  /**
   * How long after the last `/v1/events` client left the server goes on following other
   * processes, so that a client reconnecting with `Last-Event-ID` within this time misses none of
   * their events. One reconnecting later, when the server has stopped following meanwhile, gets
   * a `reset` event (reload the table) rather than a replay with their events missing.
   * @default 60000
   */
  resumeWindowMs?: Duration;
  /** A waiting client whose server stopped checking in for this long loses its queue place. @default 5000 */
  waiterTtlMs?: Duration;
  /**
   * Waits (a `POST /v1/leases` with `waitMs`, held open or parked for its client) the server keeps
   * at once. One more is refused at once with 503 `OVERLOADED` and `Retry-After`, queued nowhere;
   * a try-once and every other route are still answered. @default 10000
   */
  maxWaiters?: number;
  /** pino log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. @default 'info' */
  logLevel?: string;
  /** Where the JSON log lines go. @default process.stdout */
  logStream?: NodeJS.WritableStream;
  /** The dashboard's folder (`index.html`, `app.js`). @default the package's `web/` */
  webRoot?: string;
  /**
   * Web origins (`https://app.example`) other than the server's own whose pages may call the API
   * (CORS); requests from any other page's `Origin` are refused. See ./web-guard.ts. @default []
   */
  allowedOrigins?: readonly string[];
}

export interface ResolvedServerOptions {
  store: string | LockStore;
  storeOptions: Record<string, unknown>;
  tokens: TokenTable | null;
  maxWaitMs: number;
  bodyLimit: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  sweepIntervalMs: number;
  heartbeatMs: number;
  eventBufferSize: number;
  followIntervalMs: number;
  resumeWindowMs: number;
  waiterTtlMs: number;
  maxWaiters: number;
  logLevel: string;
  logStream: NodeJS.WritableStream | undefined;
  webRoot: string;
  allowedOrigins: ReadonlySet<string>;
}

/**
 * Connections the kernel keeps waiting to be accepted (capped by `net.core.somaxconn`). Node's
 * default, 511, is too few for thousands of clients that start waiting at once on a busy server:
 * a handshake the full queue drops is reset after ~15 s of SYN-ACK retries.
 */
export const LISTEN_BACKLOG = 4096;

export const SERVER_DEFAULTS = Object.freeze({
  store: 'sqlite:./holdfast.db',
  host: '127.0.0.1',
  port: 7070,
  maxWaitMs: 900_000,
  bodyLimit: 262_144,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 72_000,
  sweepIntervalMs: 1000,
  heartbeatMs: 15_000,
  eventBufferSize: 1000,
  followIntervalMs: 1000,
  resumeWindowMs: 60_000,
  waiterTtlMs: 5000,
  maxWaiters: 10_000,
  logLevel: 'info',
});

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const OPTION_NAMES = new Set([
  'store', 'storeOptions', 'tokens', 'maxWaitMs', 'bodyLimit', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'sweepIntervalMs',
  'heartbeatMs', 'eventBufferSize', 'followIntervalMs', 'resumeWindowMs', 'waiterTtlMs', 'maxWaiters', 'logLevel', 'logStream', 'webRoot', 'allowedOrigins', 'host', 'port', 'signals',
]);

function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(field, `expected an integer ${min}..${max}, got ${typeName(value)}`);
  }
  return value;
}

const ms = (value: Duration | undefined, fallback: number, field: string, min: number, max: number): number =>
  value === undefined ? fallback : parseDurationIn(value, field, min, max);

export function resolveServerOptions(options: ServerOptions): ResolvedServerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown server option');
  }
  const store = options.store ?? SERVER_DEFAULTS.store;
  if (typeof store !== 'string' && (typeof store !== 'object' || store === null || typeof store.acquire !== 'function')) {
    throw new InvalidRequestError('store', 'expected a store URL or a store object');
  }
  const logLevel = options.logLevel ?? SERVER_DEFAULTS.logLevel;
  if (!LOG_LEVELS.has(logLevel)) throw new InvalidRequestError('logLevel', `expected one of ${[...LOG_LEVELS].join(', ')}`);
  const tokens = options.tokens === undefined ? null : new TokenTable(typeof options.tokens === 'string' ? loadTokens(options.tokens) : options.tokens);
  return {
    store,
    storeOptions: options.storeOptions ?? {},
    tokens,
    maxWaitMs: ms(options.maxWaitMs, SERVER_DEFAULTS.maxWaitMs, 'maxWaitMs', 0, LIMITS.maxWaitMs),
    bodyLimit: options.bodyLimit === undefined ? SERVER_DEFAULTS.bodyLimit : integerIn(options.bodyLimit, 'bodyLimit', 1024, 64 * 1024 * 1024),
    requestTimeoutMs: ms(options.requestTimeoutMs, SERVER_DEFAULTS.requestTimeoutMs, 'requestTimeoutMs', 1000, 3_600_000),
    keepAliveTimeoutMs: ms(options.keepAliveTimeoutMs, SERVER_DEFAULTS.keepAliveTimeoutMs, 'keepAliveTimeoutMs', 1000, 3_600_000),
    sweepIntervalMs: ms(options.sweepIntervalMs, SERVER_DEFAULTS.sweepIntervalMs, 'sweepIntervalMs', 10, 3_600_000),
    heartbeatMs: ms(options.heartbeatMs, SERVER_DEFAULTS.heartbeatMs, 'heartbeatMs', 10, 3_600_000),
    eventBufferSize: options.eventBufferSize === undefined ? SERVER_DEFAULTS.eventBufferSize : integerIn(options.eventBufferSize, 'eventBufferSize', 1, 1_000_000),
    followIntervalMs: ms(options.followIntervalMs, SERVER_DEFAULTS.followIntervalMs, 'followIntervalMs', 50, 3_600_000),
    resumeWindowMs: ms(options.resumeWindowMs, SERVER_DEFAULTS.resumeWindowMs, 'resumeWindowMs', 0, 86_400_000),
    waiterTtlMs: ms(options.waiterTtlMs, SERVER_DEFAULTS.waiterTtlMs, 'waiterTtlMs', 300, 600_000),
    maxWaiters: options.maxWaiters === undefined ? SERVER_DEFAULTS.maxWaiters : integerIn(options.maxWaiters, 'maxWaiters', 1, 1_000_000),
    logLevel,
    logStream: options.logStream,
    webRoot: options.webRoot ?? fileURLToPath(new URL('../../../web/', import.meta.url)),
    allowedOrigins: resolveOrigins(options.allowedOrigins),
  };
}
