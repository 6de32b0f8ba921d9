/**
 * The JSON schemas of the HTTP API (SPEC section 5). Fastify validates requests and serializes
 * answers with them, and `GET /openapi.json` is generated from them, so the documentation is the
 * behaviour. Deep checks (key syntax, byte lengths, ancestors, limits) stay in `model/request.ts`,
 * which names the field and the reason; the schemas reject wrong types and unknown fields.
 */
import { LIMITS } from '../model/request.js';

export type JsonSchema = Readonly<Record<string, unknown>>;

const LEASE_ID_PATTERN = '^[A-Za-z0-9_-]{16,64}$';

const duration = {
  description: 'Milliseconds, or a string such as "500ms", "30s", "5m", "2h"',
  type: ['number', 'string'],
} as const;

const mode = { type: 'string', enum: ['exclusive', 'shared'] } as const;
const limit = { type: ['integer', 'null'], minimum: 1, maximum: LIMITS.maxLimit } as const;
const metadata = { type: 'object', additionalProperties: true, description: 'A JSON object; `message` is the sentence a blocked caller reads' } as const;
const iso = { type: 'string', format: 'date-time' } as const;
const nullableIso = { type: ['string', 'null'], format: 'date-time' } as const;

const resource = {
  type: 'object',
  additionalProperties: false,
  required: ['key', 'mode', 'limit'],
  properties: { key: { type: 'string' }, mode, limit },
} as const;

const resourceInput = {
  anyOf: [
    { type: 'string', description: 'A key, exclusive' },
    { type: 'object', additionalProperties: false, required: ['key'], properties: { key: { type: 'string' }, mode, limit } },
  ],
} as const;

/** The body of `POST /v1/leases`: the request of SPEC section 1, or the single-key shorthand. */
export const acquireBody = {
  type: 'object',
  additionalProperties: false,
  required: ['owner'],
  properties: {
    owner: { type: 'string', description: 'Who is asking: 1..256 bytes' },
    resources: {
      description: 'The resources to lock, all or nothing (or use the shorthand `key`, `mode`, `limit`)',
      anyOf: [{ type: 'string' }, { type: 'array', items: resourceInput }],
    },
    key: { type: 'string', description: 'Shorthand for one resource' },
    mode: { ...mode, description: 'With `key`. Default exclusive' },
    limit: { ...limit, description: 'With `key` and mode shared: at most this many shared holders' },
    ttlMs: { ...duration, description: 'Lease length, 100 ms to 7 days. Default 30 s' },
    waitMs: { ...duration, description: 'How long to wait in the queue (0: try once), held open up to the server maximum. Default 0' },
    requestId: { type: ['string', 'null'], description: 'Makes the request idempotent for this owner while its lease lives' },
    metadata,
    lockDelayMs: { ...duration, description: 'After an abnormal end, keep the keys unavailable this long. Default 0' },
    id: {
      type: 'string', pattern: LEASE_ID_PATTERN,
      description:
        'A fresh random id (at least 128 bits, base64url) chosen by the client, so it can cancel the wait with ' +
        'DELETE /v1/tickets/{id} before any answer. With `queue` it is also the ticket and the lease id. Default: the server draws one',
    },
    queue: {
      type: 'boolean',
      description:
        'The store protocol instead of a held-open wait: when the request has to wait, answer 202 with a ticket at once; ' +
        'the client then polls POST /v1/tickets/{ticket}/poll at least every waiterTtlMs / 3. Default false',
    },
    waiterTtlMs: { ...duration, description: 'With `queue`: a ticket not polled for this long loses its place (300 ms to 10 min). Default 5 s' },
  },
} as const;

export const renewBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { ttlMs: { ...duration, description: 'New lease length from now. Default the lease\'s TTL' } },
} as const;

export const leaseIdParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'string', pattern: LEASE_ID_PATTERN, description: 'The lease id (a capability)' } },
} as const;

export const ticketParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'string', pattern: LEASE_ID_PATTERN, description: 'The ticket: the id given (or drawn) when the request was sent' } },
} as const;

export const ownerParams = {
  type: 'object',
  required: ['owner'],
  additionalProperties: false,
  properties: { owner: { type: 'string', description: 'The owner, URL-encoded' } },
} as const;

export const keyParams = {
  type: 'object',
  required: ['*'],
  additionalProperties: false,
  properties: { '*': { type: 'string', description: 'The key: URL-encoded (`apps%2F42`) or as a path tail (`apps/42`)' } },
} as const;

const by = { type: 'string', description: 'Who asks, recorded in history (with a token: after the token name)' } as const;

export const ownerQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { key: { type: 'string', description: 'Only leases holding this exact key' }, by },
} as const;

export const forceQuery = { type: 'object', additionalProperties: false, properties: { by } } as const;

/** A release or cancel by id: who asked, when not the lease's owner (recorded in the history). */
export const endQuery = { type: 'object', additionalProperties: false, properties: { by } } as const;

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { prefix: { type: 'string', description: 'Only keys starting with this string' } },
} as const;

export const historyQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    key: { type: 'string' },
    owner: { type: 'string' },
    limit: { type: 'string', pattern: '^[0-9]{1,5}$', description: 'At most this many events, newest first (1..10000; default the store page, 100)' },
    beforeId: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'Only events with an id below this one (paging)' },
  },
} as const;

export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { prefix: { type: 'string', description: 'Only events on keys starting with this string' } },
} as const;

const resourceList = { type: 'array', items: resource } as const;

export const lease = {
  type: 'object',
  required: ['id', 'owner', 'resources', 'fence', 'acquiredAt', 'expiresAt', 'ttlMs', 'requestId', 'metadata', 'lockDelayMs'],
  properties: {
    id: { type: 'string', description: 'The lease id: whoever has it may renew or release the lease' },
    owner: { type: 'string' },
    resources: resourceList,
    fence: { type: 'integer', description: 'Strictly greater than every fence issued before' },
    acquiredAt: iso,
    expiresAt: iso,
    ttlMs: { type: 'integer' },
    requestId: { type: ['string', 'null'] },
    metadata,
    lockDelayMs: { type: 'integer' },
  },
} as const;

export const leaseAnswer = {
  type: 'object',
  required: ['lease', 'now'],
  properties: { lease, now: { ...iso, description: 'The store clock when the answer was made: place `expiresAt` on your clock from it' } },
} as const;

const heldLock = {
  type: 'object',
  properties: {
    key: { type: 'string' }, mode, limit, owner: { type: 'string' }, fence: { type: 'integer' },
    acquiredAt: iso, expiresAt: iso, metadata,
  },
} as const;

const queuedWaiter = {
  type: 'object',
  properties: {
    key: { type: 'string' }, mode, limit, owner: { type: 'string' }, position: { type: 'integer' },
    since: iso, waitUntil: iso, metadata,
  },
} as const;

export const listAnswer = {
  type: 'object',
  required: ['locks', 'waiters', 'now'],
  properties: { locks: { type: 'array', items: heldLock }, waiters: { type: 'array', items: queuedWaiter }, now: iso },
} as const;

export const historyAnswer = {
  type: 'object',
  required: ['events'],
  properties: {
    events: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'integer' }, at: iso, type: { type: 'string', enum: ['acquired', 'released', 'expired', 'forced'] },
          owner: { type: 'string' }, fence: { type: 'integer' }, resources: resourceList,
          by: { type: ['string', 'null'] }, reason: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;

const holder = {
  type: 'object',
  properties: {
    key: { type: 'string' }, mode, owner: { type: 'string' }, state: { type: 'string', enum: ['held', 'delayed', 'queued'] },
    acquiredAt: iso, expiresAt: nullableIso, metadata,
  },
} as const;

export const queuedAnswer = {
  type: 'object',
  required: ['ticket', 'holders', 'retryAfterMs', 'nextCheckMs', 'now'],
  properties: {
    ticket: { type: 'string' },
    holders: { type: 'array', items: holder },
    retryAfterMs: { type: 'integer' },
    nextCheckMs: { type: 'integer', description: 'When something blocking the ticket is due to end: poll then' },
    now: iso,
  },
} as const;

export const pollAnswer = {
  type: 'object',
  required: ['status', 'now'],
  properties: {
    status: { type: 'string', enum: ['granted', 'queued', 'gone'] },
    lease: { ...lease, description: 'granted: the lease (its id is the ticket)' },
    holders: { type: 'array', items: holder, description: 'queued: who blocks the ticket' },
    retryAfterMs: { type: 'integer' },
    nextCheckMs: { type: 'integer' },
    now: iso,
  },
} as const;

export const infoAnswer = {
  type: 'object',
  required: ['version', 'store', 'maxWaitMs', 'tokens'],
  properties: {
    version: { type: 'string' },
    store: { type: 'object', properties: { kind: { type: 'string' }, durable: { type: 'boolean' } } },
    maxWaitMs: { type: 'integer', description: 'The longest wait the server holds open for one request' },
    tokens: { type: 'boolean', description: 'Requests need a bearer token' },
  },
} as const;

export const releasedAnswer = { type: 'object', required: ['released'], properties: { released: { type: 'boolean' } } } as const;
export const countAnswer = { type: 'object', required: ['released'], properties: { released: { type: 'integer' } } } as const;


/** `{ error: { code, message, ...data } }`; the data depends on the code. */
export const errorAnswer = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      additionalProperties: true,
      properties: {
        code: {
          type: 'string',
          enum: ['LOCK_BUSY', 'WAIT_TIMEOUT', 'LEASE_LOST', 'NOT_FOUND', 'INVALID_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'STORE_UNAVAILABLE', 'INTERNAL'],
        },
        message: { type: 'string', description: 'A sentence a person can act on' },
        field: { type: 'string', description: 'INVALID_REQUEST: the field at fault' },
        reason: { type: 'string', description: 'INVALID_REQUEST: why' },
        holders: { type: 'array', items: holder, description: 'LOCK_BUSY, WAIT_TIMEOUT: who blocks the request' },
        retryAfterMs: { type: 'integer', description: 'LOCK_BUSY, WAIT_TIMEOUT: upper bound of the time until the blockers end' },
        waitedMs: { type: 'integer', description: 'WAIT_TIMEOUT' },
        maxWaitMs: { type: 'integer', description: 'WAIT_TIMEOUT: present when the server cut the wait at its maximum; the request stays queued for waiterTtlMs: send it again with the same id to go on waiting in its place, or DELETE /v1/tickets/{id}' },
        now: iso,
      },
    },
  },
} as const;

export const statusAnswer = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, store: { type: 'object', additionalProperties: true } },
} as const;

export const uiFileParams = {
  type: 'object', required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 80, description: 'NAME.js or NAME.css in web/ui/' } },
} as const;

export const whoamiAnswer = {
  type: 'object',
  required: ['name', 'admin', 'tokens'],
  properties: {
    name: { type: 'string', description: 'The token\'s name (`anonymous` when the server has no tokens)' },
    admin: { type: 'boolean', description: 'May force-release keys and release any owner\'s leases' },
    tokens: { type: 'boolean', description: 'The server checks tokens' },
  },
} as const;
