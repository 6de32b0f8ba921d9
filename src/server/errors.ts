/**
 * Turns everything that can go wrong in a request into the error answers of SPEC section 4:
 * schema violations, bad JSON, oversized bodies and unknown routes become 400/404 answers that
 * name the field, holdfast errors keep their code and status, and only a bug in the server itself
 * answers 500 (logged with the request id). Nothing here changes state.
 */
import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { HoldfastError, InvalidRequestError, NotFoundError, ServerBusyError } from '../model/errors.js';
import { errorBody, isBlocked, retryAfterSeconds } from './present.js';

/** `/resources/0/key` → `resources[0].key`. */
function fieldOf(path: string, prefix: string): string {
  let out = '';
  for (const part of path.split('/').slice(1)) {
    const name = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(name) ? `[${name}]` : out === '' ? name : `.${name}`;
  }
  return out === '' ? prefix : out;
}

const PART_NAMES: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'headers' };

/** Fastify's `schemaErrorFormatter`: the most specific schema error as an `InvalidRequestError`. */
export function schemaError(errors: FastifySchemaValidationError[], dataVar: string): Error {
  // With anyOf, every branch reports: the deepest error says most, and at one depth an error of
  // the branch whose type matched says more than another branch's type mismatch.
  const ranked = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
  const score = (e: FastifySchemaValidationError): number => e.instancePath.split('/').length * 2 + (e.keyword === 'type' ? 0 : 1);
  const error = [...(ranked.length > 0 ? ranked : errors)].sort((a, b) => score(b) - score(a))[0];
  const part = PART_NAMES[dataVar] ?? dataVar;
  if (!error) return new InvalidRequestError(part, 'does not match the schema');
  const base = fieldOf(error.instancePath, part);
  const join = (name: string): string => (base === part ? name : `${base}.${name}`);
  const params = error.params;
  switch (error.keyword) {
    case 'additionalProperty':
    case 'additionalProperties':
      return new InvalidRequestError(join(String(params['additionalProperty'])), 'unknown field');
    case 'required':
      return new InvalidRequestError(join(String(params['missingProperty'])), 'is required');
    case 'type':
      return new InvalidRequestError(base, `expected ${String(params['type']).replace(',', ' or ')}`);
    case 'enum':
      return new InvalidRequestError(base, `expected one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`);
    case 'pattern':
      return new InvalidRequestError(base, part === 'path' && base === 'id' ? 'not a lease id' : `does not match ${String(params['pattern'])}`);
    default:
      return new InvalidRequestError(base, error.message ?? 'does not match the schema');
  }
}

const FASTIFY_BAD_INPUT: Record<string, [field: string, reason: string, status?: number]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: ['body', 'not valid JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['body', 'empty, but the content type says JSON'],
  FST_ERR_CTP_BODY_TOO_LARGE: ['body', 'too large', 413],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['content-type', 'unsupported media type; send application/json', 415],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['content-length', 'does not match the body'],
  FST_ERR_BAD_URL: ['url', 'not a valid URL (bad percent-encoding)'],
  FST_ERR_MAX_PARAM_LENGTH: ['url', 'a path segment is too long', 414],
  FST_ERR_ASYNC_CONSTRAINT: ['url', 'cannot be routed'],
};

/** An INVALID_REQUEST answered with another 4xx status than 400 (413, 414, 415). */
export class HttpInputError extends InvalidRequestError {
  constructor(field: string, reason: string, status: number) {
    super(field, reason);
    Object.defineProperty(this, 'status', { value: status, enumerable: true });
  }
}

/** A body over the limit is read to its end (discarded) up to this much, so the client reads the 413, not a reset. */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_MAX_MS = 10_000;

/** Maps any error of a request to a holdfast error, or `null` for a bug of the server. */
export function classify(error: unknown, bodyLimit: number): HoldfastError | null {
  if (error instanceof HoldfastError) return error;
  const e = error as Partial<FastifyError> & { type?: string };
  if (typeof e !== 'object' || e === null) return null;
  const known = typeof e.code === 'string' ? FASTIFY_BAD_INPUT[e.code] : undefined;
  if (known) {
    const base = e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `larger than ${bodyLimit} bytes` : known[1];
    const reason = e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' && e.message ? `${base}: ${e.message.slice(0, 200)}` : base;
    return known[2] === undefined ? new InvalidRequestError(known[0], reason) : new HttpInputError(known[0], reason, known[2]);
  }
  if (error instanceof SyntaxError) return new InvalidRequestError('body', `not valid JSON: ${error.message.slice(0, 200)}`);
  const status = typeof e.statusCode === 'number' ? e.statusCode : 0;
  if (status === 404) return new NotFoundError('The route');
  if (status >= 400 && status < 500) return new InvalidRequestError('request', (e.message ?? 'bad request').slice(0, 200));
  return null;
}

/** Sends `error` as the answer of SPEC section 4 (with `Retry-After` when blocked). */
export function sendError(reply: FastifyReply, error: HoldfastError, extra: Record<string, unknown> = {}): FastifyReply {
  if (isBlocked(error)) {
    reply.header('retry-after', String(retryAfterSeconds(error.retryAfterMs)));
    extra = { now: new Date().toISOString(), ...extra };
  }
  if (error instanceof ServerBusyError) reply.header('retry-after', String(retryAfterSeconds(error.retryAfterMs)));
  if (error.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer realm="holdfast"');
  return reply.code(error.status).send(errorBody(error, extra));
}

/**
 * Resolves once the rest of an unread request body has arrived (and was discarded), or after
 * DRAIN_MAX_BYTES / DRAIN_MAX_MS, when the connection is to be closed after the answer. Answering
 * while the client still sends would reset the connection (EPIPE) before it reads the answer.
 */
function drained(request: FastifyRequest): Promise<boolean> {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    let bytes = 0;
    const finish = (complete: boolean): void => {
      clearTimeout(timer);
      raw.off('data', count).off('end', ended).off('error', failed).off('close', failed);
      resolve(complete);
    };
    const count = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > DRAIN_MAX_BYTES) finish(false);
    };
    const ended = (): void => finish(true);
    const failed = (): void => finish(false);
    const timer = setTimeout(failed, DRAIN_MAX_MS);
    timer.unref();
    raw.on('data', count).once('end', ended).once('error', failed).once('close', failed);
    raw.resume();
  });
}

/** The error handler of the server instance, and of Fastify's framework errors (bad URL, ...). */
export function errorHandler(bodyLimit: number, storeError: () => void) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> => {
    const known = classify(error, bodyLimit);
    if (known) {
      if (known.code === 'STORE_UNAVAILABLE') {
        storeError();
        request.log.warn({ err: known }, 'store unavailable');
      }
      if (known.status === 413 && !request.raw.complete) {
        return drained(request).then((complete) => {
          if (!complete) reply.header('connection', 'close');
          return sendError(reply, known);
        });
      }
      return sendError(reply, known);
    }
    request.log.error({ err: error }, 'internal error');
    return reply.code(500).send({ error: { code: 'INTERNAL', message: `Internal error of the holdfast server (request ${request.id}); see the server log` } });
  };
}
