/**
 * What the server logs per request, and what that costs when nothing is written. At the default
 * level (`info`) a busy server writes no line per request, so a request should not pay for one:
 *
 * - `QuietRequestLog`: each request's own lines (`incoming request`, `request completed`) at
 *   `debug`; a request that errored is still logged at `error`.
 * - `lazyRequestLog`: the request's child logger (the one that adds `reqId` to its lines) is made
 *   when the request first logs at an enabled level, not for every request (a pino child per
 *   request was ~1 KB and ~1 µs).
 * - `requestIds`: request ids from a per-process random prefix and a counter (a random UUID per
 *   request was another ~1 KB and ~1 µs). A client's own `x-request-id` is kept when valid.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';

/** A request id a client may give in `x-request-id`. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Each request's own lines (`incoming request`, `request completed`) at `debug`: at the default
 * `info` a busy server writes none (a pino line per request cost a quarter of its CPU at 64
 * clients). A request that errored is still logged at `error`, and the routes log lost leases,
 * refusals and store failures at `warn` and `error` where they happen.
 */
export class QuietRequestLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) super.requestCompleted(error, request, reply);
    else reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** `genReqId`: the client's valid `x-request-id`, else `<8 hex digits of this process>-<counter>`. */
export function requestIds(): (raw: IncomingMessage) => string {
  const prefix = randomBytes(4).toString('hex');
  let next = 0;
  return (raw) => {
    const given = raw.headers['x-request-id'];
    return typeof given === 'string' && REQUEST_ID.test(given) ? given : `${prefix}-${(++next).toString(36)}`;
  };
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;
type Write = (...args: unknown[]) => void;

/** pino's `isLevelEnabled` (a logger without it is taken to log every level). */
function enabled(logger: FastifyBaseLogger, level: string): boolean {
  const check = (logger as Partial<{ isLevelEnabled(level: string): boolean }>).isLevelEnabled;
  return check === undefined || check.call(logger, level);
}

/**
 * A request's logger that makes its pino child only when a line is written at an enabled level.
 * It has the methods Fastify checks for (`info`, `error`, `debug`, `fatal`, `warn`, `trace`,
 * `child`) and `level`; a route given its own log level gets its child at once.
 */
class LazyRequestLog {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #options: ChildOptions;
  #child: FastifyBaseLogger | null = null;

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options: ChildOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
    if ((options as { level?: unknown }).level !== undefined) this.#made();
  }

  #made(): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options));
  }

  #write(level: Level, args: unknown[]): void {
    if (!enabled(this.#child ?? this.#parent, level)) return;
    (this.#made() as unknown as Record<Level, Write>)[level](...args);
  }

  get level(): string {
    return (this.#child ?? this.#parent).level;
  }

  set level(level: string) {
    this.#made().level = level;
  }

  isLevelEnabled(level: string): boolean {
    return enabled(this.#child ?? this.#parent, level);
  }

  fatal(...args: unknown[]): void {
    this.#write('fatal', args);
  }

  error(...args: unknown[]): void {
    this.#write('error', args);
  }

  warn(...args: unknown[]): void {
    this.#write('warn', args);
  }

  info(...args: unknown[]): void {
    this.#write('info', args);
  }

  debug(...args: unknown[]): void {
    this.#write('debug', args);
  }

  trace(...args: unknown[]): void {
    this.#write('trace', args);
  }

  silent(): void {}

  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.#made().child(bindings, options);
  }
}

/** Fastify's `childLoggerFactory`: a `LazyRequestLog` per request. */
export function lazyRequestLog(parent: FastifyBaseLogger, bindings: Bindings, options: ChildOptions): FastifyBaseLogger {
  return new LazyRequestLog(parent, bindings, options) as unknown as FastifyBaseLogger;
}
