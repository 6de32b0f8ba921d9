/**
 * Validation of requests (SPEC section 1). Every bad field is rejected with `INVALID_REQUEST`
 * naming the field and the reason; nothing is changed by a rejected request.
 */
import { randomFillSync } from 'node:crypto';
import { parseDurationIn, typeName } from './duration.js';
import { InvalidRequestError } from './errors.js';
import { isAncestor, keyProblem } from './keys.js';
import type { LockRequest, Metadata, Mode, Resource } from './types.js';

export const LIMITS = Object.freeze({
  minTtlMs: 100,
  maxTtlMs: 604_800_000,
  defaultTtlMs: 30_000,
  maxWaitMs: 604_800_000,
  maxLockDelayMs: 3_600_000,
  maxOwnerBytes: 256,
  maxRequestIdBytes: 256,
  maxResources: 64,
  maxLimit: 1_000_000,
  maxMetadataBytes: 16_384,
});

/** One resource as callers write it: a key, or `{ key, mode?, limit? }`. */
export type ResourceInput = string | { key: string; mode?: Mode; limit?: number | null };

/** What a caller may send to acquire (the library's options and the HTTP body share it). */
export interface RequestInput {
  owner?: unknown;
  resources?: unknown;
  ttlMs?: unknown;
  waitMs?: unknown;
  requestId?: unknown;
  metadata?: unknown;
  lockDelayMs?: unknown;
}

export interface ValidatedRequest {
  request: LockRequest;
  waitMs: number;
}

// Lease ids are drawn from a pool refilled 256 ids at a time: one system call and one base64url
// encoding, not one per id. Each id takes 18 bytes of the pool, 24 characters of its text.
const ID_POOL = 256;
const ID_CHARS = 22;
const idPool = Buffer.alloc(18 * ID_POOL);
let idText = '';
let idNext = ID_POOL;

/**
 * A fresh lease id: 22 base64url characters from the CSPRNG (132 random bits). It never starts
 * with `-` (a leading `-` becomes `A`, keeping over 131 random bits), so a shell command line
 * such as `holdfast renew ID` never reads it as an option.
 */
export function newLeaseId(): string {
  if (idNext >= ID_POOL) {
    randomFillSync(idPool);
    idText = idPool.toString('base64url');
    idNext = 0;
  }
  const id = idText.substring(idNext * 24, idNext * 24 + ID_CHARS);
  idNext++;
  return id.charCodeAt(0) === 0x2d ? `A${id.slice(1)}` : id;
}

const LEASE_ID = /^[A-Za-z0-9_-]{16,64}$/;
export function isLeaseId(value: unknown): value is string {
  return typeof value === 'string' && LEASE_ID.test(value);
}

// Printable ASCII: one byte per character, no controls.
const PRINTABLE_ASCII = /^[\u0020-\u007e]+$/;

function boundedString(value: unknown, field: string, maxBytes: number): string {
  if (typeof value !== 'string') throw new InvalidRequestError(field, `expected a string, got ${typeName(value)}`);
  if (value.length <= maxBytes && PRINTABLE_ASCII.test(value)) return value;
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > maxBytes) throw new InvalidRequestError(field, `expected 1..${maxBytes} bytes, got ${bytes}`);
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new InvalidRequestError(field, 'control characters are not allowed');
  return value;
}

export function validateOwner(value: unknown, field = 'owner'): string {
  if (value === undefined) throw new InvalidRequestError(field, 'is required');
  return boundedString(value, field, LIMITS.maxOwnerBytes);
}

function validateMode(value: unknown, field: string): Mode {
  if (value === undefined) return 'exclusive';
  if (value === 'exclusive' || value === 'shared') return value;
  throw new InvalidRequestError(field, `expected "exclusive" or "shared", got ${typeName(value)}`);
}

function validateLimit(value: unknown, mode: Mode, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (mode !== 'shared') throw new InvalidRequestError(field, 'a limit is only allowed with mode "shared"');
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > LIMITS.maxLimit) {
    throw new InvalidRequestError(field, `expected an integer 1..${LIMITS.maxLimit}, got ${typeName(value)}`);
  }
  return value;
}

export function validateResource(value: unknown, field: string): Resource {
  return resourceAt(value, field, -1);
}

function fieldAt(base: string, index: number, name = ''): string {
  return `${index < 0 ? base : `${base}[${index}]`}${name}`;
}

/**
 * Validates `base[index]` (or `base` itself when `index` is -1). Field names are built only for
 * an error: every acquire passes through here, and most are valid.
 */
function resourceAt(value: unknown, base: string, index: number): Resource {
  if (typeof value === 'string') {
    const problem = keyProblem(value);
    if (problem !== null) throw new InvalidRequestError(fieldAt(base, index), problem);
    return { key: value, mode: 'exclusive', limit: null };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError(fieldAt(base, index), `expected a key or { key, mode, limit }, got ${typeName(value)}`);
  }
  const record = value as Record<string, unknown>;
  for (const name in record) {
    if (name !== 'key' && name !== 'mode' && name !== 'limit') throw new InvalidRequestError(fieldAt(base, index, `.${name}`), 'unknown field');
  }
  const key = record['key'];
  const problem = keyProblem(key);
  if (problem !== null) throw new InvalidRequestError(fieldAt(base, index, '.key'), problem);
  const rawMode = record['mode'];
  const mode = rawMode === undefined || rawMode === 'exclusive' || rawMode === 'shared' ? (rawMode ?? 'exclusive') : validateMode(rawMode, fieldAt(base, index, '.mode'));
  const rawLimit = record['limit'];
  const limit = rawLimit === undefined || rawLimit === null ? null : validateLimit(rawLimit, mode, fieldAt(base, index, '.limit'));
  return { key: key as string, mode, limit };
}

export function validateResources(value: unknown, field = 'resources'): Resource[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw new InvalidRequestError(field, `expected a key or an array of resources, got ${typeName(value)}`);
  if (list.length < 1 || list.length > LIMITS.maxResources) {
    throw new InvalidRequestError(field, `expected 1..${LIMITS.maxResources} resources, got ${list.length}`);
  }
  const resources: Resource[] = [];
  for (let i = 0; i < list.length; i++) resources.push(resourceAt(list[i], field, i));
  for (let i = 0; i < resources.length; i++) {
    for (let j = 0; j < resources.length; j++) {
      if (i === j) continue;
      const a = resources[i]!.key;
      const b = resources[j]!.key;
      if (a === b && i < j) throw new InvalidRequestError(`${field}[${j}].key`, `duplicate key ${JSON.stringify(b)}`);
      if (isAncestor(a, b)) {
        throw new InvalidRequestError(`${field}[${j}].key`, `${JSON.stringify(a)} is an ancestor of ${JSON.stringify(b)} in the same request`);
      }
    }
  }
  return resources;
}

export function validateMetadata(value: unknown, field = 'metadata'): Metadata {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidRequestError(field, `expected a JSON object, got ${typeName(value)}`);
  }
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new InvalidRequestError(field, 'must be serializable as JSON', { cause: error });
  }
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > LIMITS.maxMetadataBytes) {
    throw new InvalidRequestError(field, `expected at most ${LIMITS.maxMetadataBytes} bytes of JSON, got ${bytes}`);
  }
  return JSON.parse(json) as Metadata;
}

export function validateTtl(value: unknown, field = 'ttlMs'): number {
  if (value === undefined) return LIMITS.defaultTtlMs;
  return parseDurationIn(value, field, LIMITS.minTtlMs, LIMITS.maxTtlMs);
}

export function validateWait(value: unknown, field = 'waitMs', maxWaitMs: number = LIMITS.maxWaitMs): number {
  if (value === undefined) return 0;
  return parseDurationIn(value, field, 0, maxWaitMs);
}

export function validateRequestId(value: unknown, field = 'requestId'): string | null {
  if (value === undefined || value === null) return null;
  return boundedString(value, field, LIMITS.maxRequestIdBytes);
}

/** Validates a whole request. `id` is the lease id to use (a fresh one by default). */
export function validateRequest(input: RequestInput, id: string = newLeaseId()): ValidatedRequest {
  const owner = validateOwner(input.owner);
  const resources = validateResources(input.resources);
  const ttlMs = validateTtl(input.ttlMs);
  const waitMs = validateWait(input.waitMs);
  const requestId = validateRequestId(input.requestId);
  const metadata = validateMetadata(input.metadata);
  const lockDelayMs = input.lockDelayMs === undefined ? 0 : parseDurationIn(input.lockDelayMs, 'lockDelayMs', 0, LIMITS.maxLockDelayMs);
  return { request: { id, owner, resources, ttlMs, requestId, metadata, lockDelayMs }, waitMs };
}
