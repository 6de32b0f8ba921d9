/** Flag values shared by the lock commands: durations, resources, metadata. */
import { parseDuration } from '../model/duration.js';
import { HoldfastError } from '../model/errors.js';
import type { ResourceInput } from '../model/request.js';
import { UsageError, type Options } from './command.js';

export const LOCK_FLAGS = {
  shared: { type: 'boolean' },
  limit: { type: 'string' },
  owner: { type: 'string' },
  wait: { type: 'string' },
  ttl: { type: 'string' },
  'lock-delay': { type: 'string' },
  metadata: { type: 'string' },
  message: { type: 'string' },
} as const satisfies Options;

export const LOCK_USAGE = `Lock:
  --shared            take the keys in shared mode (default exclusive)
  --limit N           with --shared: at most N shared holders (a semaphore)
  --owner O           who holds the lock (default user@host:pid)
  --wait DURATION     wait in the queue up to this long (default 0: try once)
  --ttl DURATION      lease length, renewed while held (default 30s)
  --lock-delay D      keep the keys unavailable this long after an abnormal end (default 0)
  --metadata JSON     a JSON object shown to anyone blocked
  --message TEXT      shorthand for --metadata '{"message": TEXT}'
Durations: 500ms, 30s, 5m, 2h.`;

export interface LockFlagValues {
  shared?: boolean | undefined;
  limit?: string | undefined;
  owner?: string | undefined;
  wait?: string | undefined;
  ttl?: string | undefined;
  'lock-delay'?: string | undefined;
  metadata?: string | undefined;
  message?: string | undefined;
}

export function duration(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDuration(value, flag);
  } catch {
    throw new UsageError(`--${flag}: expected a duration like 500ms, 30s, 5m or 2h, got ${JSON.stringify(value)}`);
  }
}

export function resourcesOf(keys: string[], values: LockFlagValues): ResourceInput[] {
  if (keys.length === 0) throw new UsageError('at least one KEY is required');
  let limit: number | null = null;
  if (values.limit !== undefined) {
    if (!values.shared) throw new UsageError('--limit needs --shared');
    limit = Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit: expected a positive integer, got ${JSON.stringify(values.limit)}`);
  }
  return keys.map((key) => ({ key, mode: values.shared ? 'shared' : 'exclusive', limit }));
}

export function metadataOf(values: LockFlagValues): Record<string, unknown> | undefined {
  let metadata: Record<string, unknown> | undefined;
  if (values.metadata !== undefined) {
    try {
      metadata = JSON.parse(values.metadata) as Record<string, unknown>;
    } catch {
      throw new UsageError('--metadata: expected a JSON object');
    }
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) throw new UsageError('--metadata: expected a JSON object');
  }
  if (values.message !== undefined) metadata = { ...metadata, message: values.message };
  return metadata;
}

/** What a lock command asks for, from its flags: owner (default user@host:pid), TTL, wait (default 0), lock-delay, metadata. */
export function lockOptionsOf(values: LockFlagValues, owner: () => string): {
  owner: string; ttlMs: number | undefined; waitMs: number; lockDelayMs: number | undefined; metadata: Record<string, unknown> | undefined;
} {
  return {
    owner: values.owner ?? owner(),
    ttlMs: duration(values.ttl, 'ttl'),
    waitMs: duration(values.wait, 'wait') ?? 0,
    lockDelayMs: duration(values['lock-delay'], 'lock-delay'),
    metadata: metadataOf(values),
  };
}

/** Maps a library error to the CLI's exit code and a one-line message. */
export function exitFor(error: unknown): { code: number; message: string } {
  if (error instanceof UsageError) return { code: 64, message: error.message };
  if (error instanceof HoldfastError) {
    const code =
      error.code === 'LOCK_BUSY' || error.code === 'WAIT_TIMEOUT' ? 75
        : error.code === 'INVALID_REQUEST' ? 64
          : error.code === 'STORE_UNAVAILABLE' ? 69
            : 1;
    return { code, message: `${error.code}: ${error.message}` };
  }
  return { code: 1, message: error instanceof Error ? error.message : String(error) };
}
