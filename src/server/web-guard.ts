/**
 * What a web page can't do to a holdfast server. Any page the user visits can send requests to
 * `http://127.0.0.1:7070` (the browser adds the user's network position), and with DNS rebinding
 * it can even read the answers (its own name resolving to 127.0.0.1). So, before any route runs:
 *
 * - A request with an `Origin` header (browsers send it on every cross-origin request but simple
 *   GETs, and on every same-origin request that changes something) is refused unless the origin is
 *   the server's own (its host is the `Host` the request was sent to) or listed in
 *   `allowedOrigins`. `Origin: null` (sandboxed frames, file pages) is refused.
 * - A request that changes state (POST, PUT, PATCH, DELETE) must send its body as
 *   `application/json`: the content types a page may send without a CORS preflight (text/plain,
 *   form encodings) are refused 415, and so is a body without a content type.
 * - Without tokens (the server then listens on loopback only), the `Host` must be one of the
 *   server's own names or addresses (localhost, 127.0.0.0/8, ::1, the machine's host name, the
 *   address it listens on, the hosts of `allowedOrigins`): a rebound name like `evil.example` is
 *   refused, so a page can't read the lock table through it (Consul's and etcd's CVEs).
 *
 * An allowed foreign origin gets CORS answers (`Access-Control-Allow-Origin`, and preflights).
 * Refusals are 403 FORBIDDEN (415 INVALID_REQUEST for the content type) and change nothing.
 */
import { hostname } from 'node:os';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { ForbiddenError, InvalidRequestError } from '../model/errors.js';
import { isLoopback } from './auth.js';
import { HttpInputError } from './errors.js';

const CHANGES_STATE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** `allowedOrigins` as given (`https://app.example:8443`), normalized to their origins. */
export function resolveOrigins(value: unknown): ReadonlySet<string> {
  if (value === undefined) return new Set();
  if (!Array.isArray(value)) throw new InvalidRequestError('allowedOrigins', 'expected an array of origins like "https://app.example"');
  return new Set(value.map((origin: unknown, i) => {
    const field = `allowedOrigins[${i}]`;
    if (typeof origin !== 'string') throw new InvalidRequestError(field, 'expected an origin like "https://app.example"');
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new InvalidRequestError(field, `not an origin: ${JSON.stringify(origin)}`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin.replace(/\/$/, '').toLowerCase()) {
      throw new InvalidRequestError(field, `expected scheme://host[:port] and nothing else, got ${JSON.stringify(origin)}`);
    }
    return url.origin;
  }));
}

/** The host name of a `Host` header value (`[::1]:7070` → `::1`), lower case. */
function hostOf(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

export interface WebGuardOptions {
  allowedOrigins: ReadonlySet<string>;
  /** With tokens, any Host is served (the server may listen anywhere, behind any name). */
  checkHost: boolean;
  /** The address the server listens on, once it does. */
  listening: () => string | null;
}

/** The global `onRequest` hook. */
export function webGuard(options: WebGuardOptions) {
  const allowedHosts = new Set([hostname().toLowerCase(), ...[...options.allowedOrigins].map((o) => new URL(o).hostname.replace(/^\[|\]$/g, ''))]);
  const ownHost = (name: string): boolean => isLoopback(name) || allowedHosts.has(name) || name === options.listening()?.toLowerCase();

  // A callback hook, not an async one: no promise and no extra microtask turn per request.
  return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    let answered: boolean;
    try {
      answered = check(request, reply);
    } catch (error) {
      done(error as Error);
      return;
    }
    // An answered preflight is sent; the request goes no further (Fastify: no `done` then).
    if (!answered) done();
  };

  /** Throws on a refused request; true when it answered the request itself (a CORS preflight). */
  function check(request: FastifyRequest, reply: FastifyReply): boolean {
    const host = request.headers.host;
    if (options.checkHost && host !== undefined && !ownHost(hostOf(host))) {
      throw new ForbiddenError(
        `The Host ${JSON.stringify(host)} is not a name of this server: without tokens it answers only to localhost and its own addresses ` +
          '(a web page may have rebound its own name to this address); add the origin to allowedOrigins, or configure tokens',
      );
    }
    const origin = request.headers.origin;
    if (origin !== undefined) {
      const foreign = !sameOrigin(origin, host);
      if (foreign && !options.allowedOrigins.has(origin.toLowerCase())) {
        throw new ForbiddenError(
          `Requests from the web page ${JSON.stringify(origin)} are refused: only this server's own pages, and origins listed in allowedOrigins, may use it`,
        );
      }
      if (foreign) {
        reply.header('access-control-allow-origin', origin).header('vary', 'Origin');
        if (request.method === 'OPTIONS') {
          void reply.code(204)
            .header('access-control-allow-methods', 'GET, POST, DELETE')
            .header('access-control-allow-headers', 'authorization, content-type, last-event-id, x-request-id')
            .header('access-control-max-age', '600')
            .send();
          return true;
        }
      }
    }
    if (CHANGES_STATE.has(request.method)) {
      const type = request.headers['content-type'];
      const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
      if (type === undefined ? hasBody : !JSON_TYPE.test(type)) {
        throw new HttpInputError('content-type', `expected application/json, got ${type === undefined ? 'none' : JSON.stringify(type.slice(0, 100))}`, 415);
      }
    }
    return false;
  }
}

/** True when `origin` names the host the request was sent to (any scheme: TLS may end at a proxy). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || origin === 'null') return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host || new URL(origin).host === new URL(`https://${host}`).host;
  } catch {
    return false;
  }
}
