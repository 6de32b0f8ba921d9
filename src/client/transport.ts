/**
 * JSON over HTTP(S) to a holdfast server with node's `http`/`https` and keep-alive agents. Error
 * answers become the matching `HoldfastError`; network failures become `StoreUnavailableError`;
 * an aborted signal rejects with its reason. Idle pooled sockets are closed after a few seconds
 * (well before the server's keep-alive timeout) and do not keep the process alive.
 */
import http from 'node:http';
import https from 'node:https';
import {
  ForbiddenError, HoldfastError, InvalidRequestError, LeaseLostError, LockBusyError, NotFoundError, ServerBusyError, StoreUnavailableError,
  UnauthorizedError, WaitTimeoutError, type ErrorCode, type Holder,
} from '../model/errors.js';
import { combineSignals } from '../model/linked-abort.js';

export interface TransportOptions {
  /** Bearer token sent with every request. */
  token: string | undefined;
  /** Time allowed for an answer beyond the time the server may hold a wait. */
  timeoutMs: number;
}

export interface Answer {
  status: number;
  body: unknown;
  headers: http.IncomingHttpHeaders;
  /** performance.now() when the request was sent and when its answer had arrived. */
  sentAt: number;
  arrivedAt: number;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  signal?: AbortSignal | undefined;
  /** Extra time the server may take (a wait it holds open). */
  holdMs?: number;
}

const IDLE_SOCKET_MS = 4000;

/** The error of an answer `{ error: { code, message, ...data } }`. */
export function errorOf(status: number, body: unknown): HoldfastError {
  const error = (typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined) as Record<string, unknown> | undefined;
  const code = typeof error?.['code'] === 'string' ? (error['code'] as ErrorCode) : undefined;
  const message = typeof error?.['message'] === 'string' ? error['message'] : `HTTP ${status}`;
  const holders = Array.isArray(error?.['holders']) ? (error['holders'] as Holder[]) : [];
  const retryAfterMs = typeof error?.['retryAfterMs'] === 'number' ? error['retryAfterMs'] : 1000;
  const now = typeof error?.['now'] === 'string' ? Date.parse(error['now']) : Date.now();
  switch (code) {
    case 'INVALID_REQUEST':
      return new InvalidRequestError(String(error?.['field'] ?? 'request'), String(error?.['reason'] ?? message));
    case 'LOCK_BUSY':
      return new LockBusyError({ holders, retryAfterMs, now });
    case 'WAIT_TIMEOUT':
      return new WaitTimeoutError({ holders, retryAfterMs, now, waitedMs: Number(error?.['waitedMs'] ?? 0) });
    case 'LEASE_LOST':
      return new LeaseLostError('');
    case 'NOT_FOUND':
      return new NotFoundError(message.replace(/ was not found$/, ''));
    case 'UNAUTHORIZED':
      return new UnauthorizedError(message);
    case 'FORBIDDEN':
      return new ForbiddenError(message);
    case 'STORE_UNAVAILABLE':
      if (error?.['reason'] === 'too-many-waiters') {
        return new ServerBusyError({ maxWaiters: typeof error['maxWaiters'] === 'number' ? error['maxWaiters'] : null, retryAfterMs });
      }
      return new StoreUnavailableError(message.replace(/^The store is unavailable, nothing was granted: /, ''));
    default:
      return status >= 500 || status === 0
        ? new StoreUnavailableError(`the server answered ${status}: ${message}`)
        : new HoldfastError('INVALID_REQUEST', 400, `The server answered ${status}: ${message}`);
  }
}

export class Transport {
  readonly #base: URL;
  readonly #options: TransportOptions;
  readonly #agent: http.Agent;
  readonly #module: typeof http | typeof https;

  constructor(base: URL, options: TransportOptions) {
    this.#base = new URL(base.href.endsWith('/') ? base.href : `${base.href}/`);
    this.#options = options;
    const secure = base.protocol === 'https:';
    this.#module = secure ? https : http;
    this.#agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, timeout: IDLE_SOCKET_MS, maxSockets: 64 });
  }

  get origin(): string {
    return this.#base.origin;
  }

  /** A URL under the base (`path` without its leading slash), with `query` (undefined values left out). */
  url(path: string, query: Record<string, string | number | undefined> = {}): URL {
    const url = new URL(path.replace(/^\//, ''), this.#base);
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value));
    return url;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const token = this.#options.token;
    return { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra };
  }

  /** Sends one request; retries once when a reused keep-alive socket turns out closed. */
  async call(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
    try {
      return await this.#once(method, path, options);
    } catch (error) {
      if ((error as { retryable?: boolean }).retryable) return this.#once(method, path, options);
      throw error;
    }
  }

  #once(method: string, path: string, options: CallOptions): Promise<Answer> {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    // A signal of its own per call: many calls can share the caller's signal without piling
    // listeners (and warnings) on it (combineSignals: AbortSignal.any for a caller's signal, a
    // cheaper LinkedAbort for holdfast's own, unlinked when the call settles).
    const linked = options.signal ? combineSignals(options.signal) : null;
    const signal = linked?.signal;
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const url = this.url(path, options.query);
    const timeoutMs = this.#options.timeoutMs + (options.holdMs ?? 0);
    return new Promise<Answer>((resolve, reject) => {
      const sentAt = performance.now();
      const req = this.#module.request(url, {
        method,
        agent: this.#agent,
        headers: this.headers(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
      });
      let settled = false;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        linked?.unlink();
        reject(error);
      };
      const onAbort = (): void => {
        req.destroy();
        fail(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (signal?.aborted) return fail(signal.reason);
        const unavailable = new StoreUnavailableError(`cannot reach the holdfast server at ${this.#base.origin}: ${error.code ?? error.message}`, { cause: error });
        // A pooled socket the server had closed: the request never reached it, so it can be sent again.
        if (req.reusedSocket && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) Object.assign(unavailable, { retryable: true });
        fail(unavailable);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => fail(new StoreUnavailableError(`the answer broke off: ${error.message}`, { cause: error })));
        res.on('end', () => {
          if (settled) return;
          const arrivedAt = performance.now();
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = null;
          if (text !== '') {
            try {
              body = JSON.parse(text);
            } catch {
              return fail(new StoreUnavailableError(`the server at ${this.#base.origin} answered ${res.statusCode} with something that is not JSON`));
            }
          }
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          linked?.unlink();
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers, sentAt, arrivedAt });
        });
      });
      req.end(payload);
    });
  }

  /** Opens a streaming GET (for server-sent events); the caller reads and ends it. */
  stream(path: string, headers: Record<string, string>, query: Record<string, string | undefined> = {}): http.ClientRequest {
    return this.#module.request(this.url(path, query), { method: 'GET', agent: false, headers: this.headers({ accept: 'text/event-stream', ...headers }) });
  }

  close(): void {
    this.#agent.destroy();
  }
}
