/**
 * `redis://host:6379/N[?prefix=NAME]`: the lock table in Redis 7+. The algorithm of
 * `src/stores/table/` runs inside Redis as one library of Functions (library/*.lua), loaded when
 * the store opens (and again when Redis lost it: a restart without persistence, FUNCTION FLUSH),
 * so each operation is one atomic call and one round trip, with time from the server's `TIME`.
 * Every key of a namespace shares one hash tag, so a Redis Cluster keeps a namespace in one slot.
 *
 * Wake-ups: the library appends each grant of a queued ticket to the inbox stream of the store
 * object that queued it (inbox.ts), so a waiter in this or any other process is woken without
 * polling, and only the waiters a grant concerns are. Changes made through this object are
 * published from the functions' answers. An unref'd timer at the next due time sweeps expiries.
 *
 * Client: node-redis 5 (`@redis/client`), the maintained Node client (ioredis is in best-effort
 * maintenance); `connections` (2) multiplexed connections for operations (connections.ts; CLIENT
 * SETNAME `holdfast:<prefix>`), one for the inbox's blocking XREAD (`holdfast-inbox:<prefix>`),
 * opened with the first ticket.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClientType } from '@redis/client';
import { InvalidRequestError, StoreUnavailableError } from '../../model/errors.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions,
  PollOutcome, RenewOutcome, StoreChange, StoreInfo,
} from '../store.js';
import {
  requestJson, toAcquireOutcome, toFunctionResult, toHistory, toHoldfastError, toLease, toLockTable, toPollOutcome,
  toRenewOutcome, type FunctionResult,
} from './convert.js';
import { ChangeHub } from '../change-hub.js';
import { Connections, type Connection } from './connections.js';
import { DueTimer } from '../due-timer.js';
import { Inbox } from './inbox.js';
import { LIBRARY_CODE, LIBRARY_VERSION } from './library.generated.js';
import { resolveRedisOptions, validatePrefix, type RedisStoreOptions, type ResolvedRedisOptions } from './options.js';

export type { RedisStoreOptions } from './options.js';
export { REDIS_DEFAULTS, resolveRedisOptions } from './options.js';

/** The key base of a namespace: every key of the store starts with it (one hash tag). */
export function baseOf(prefix: string): string {
  return `hf:{${prefix}}:`;
}

export class RedisStore implements LockStore {
  readonly info: StoreInfo = { kind: 'redis', durable: false, wakeups: 'complete' };
  readonly #options: ResolvedRedisOptions;
  readonly #connections: Connections;
  readonly #base: string;
  /** Names this object's inbox; tells the library where to push grants of its tickets. */
  readonly #origin = randomBytes(9).toString('base64url');
  readonly #hub = new ChangeHub();
  readonly #pending = new Set<Promise<unknown>>();
  #inbox: Inbox | null = null;
  #closed = false;
  #due: DueTimer;

  private constructor(url: string, options: ResolvedRedisOptions) {
    this.#options = options;
    // Sweeps at the next due time this object has heard of (expiries, waiter deadlines, delays).
    this.#due = new DueTimer({
      enabled: this.#options.autoSweep,
      fire: () => {
        this.sweep().catch(() => {});
      },
    });
    this.#base = baseOf(options.prefix);
    this.#connections = new Connections({
      url, count: options.connections, name: `holdfast:${options.prefix}`, connectTimeoutMs: options.connectTimeoutMs, reconnectMaxMs: options.reconnectMaxMs,
    });
  }

  /** Connects, checks the server and loads the library. */
  static async open(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
    const resolved = resolveRedisOptions(options);
    const store = new RedisStore(url, resolved);
    try {
      await store.#connect();
    } catch (error) {
      store.#closed = true;
      store.#connections.destroy();
      throw toHoldfastError(error);
    }
    return store;
  }

  /**
   * Connects, then checks the server and loads the library. A Redis that has just started answers
   * LOADING while it reads its AOF or RDB: the steps are tried again until it has, all within
   * `connectTimeoutMs` of the start.
   */
  async #connect(): Promise<void> {
    const deadline = Date.now() + this.#options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no connection within ${this.#options.connectTimeoutMs} ms`)), this.#options.connectTimeoutMs);
    });
    try {
      await Promise.race([this.#connections.connect(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    await whileLoading(deadline, this.#options.connectTimeoutMs, async () => {
      const server = String(await this.#send(['INFO', 'server']));
      const version = /redis_version:(\d+)\.(\d+)/.exec(server);
      if (version !== null && Number(version[1]) < 7) {
        throw new StoreUnavailableError(`Redis 7.0 or later is needed (Redis Functions); the server is ${version[1]}.${version[2]}`);
      }
      await this.#loadLibrary();
    });
    this.info.durable = this.#options.durable ?? (await this.#serverDurable());
  }

  /** AOF on with `appendfsync always`; false when CONFIG is refused (managed services). */
  async #serverDurable(): Promise<boolean> {
    try {
      const aof = (await this.#send(['CONFIG', 'GET', 'appendonly'])) as string[];
      const fsync = (await this.#send(['CONFIG', 'GET', 'appendfsync'])) as string[];
      return aof[1] === 'yes' && fsync[1] === 'always';
    } catch {
      return false;
    }
  }

  async #loadLibrary(): Promise<void> {
    try {
      await this.#send(['FUNCTION', 'LOAD', LIBRARY_CODE]);
    } catch (error) {
      // Another process loaded this version first.
      if (!/already exists/i.test(String((error as Error)?.message))) throw error;
    }
  }

  /** One command on `on` (by default the operations connection with the fewest in flight). */
  #send(args: string[], on?: Connection): Promise<unknown> {
    return this.#connections.send(args, on);
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const done = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  /** FCALL (or FCALL_RO) of one library function on `on`; reloads the library once when Redis lost it. */
  async #fcall(name: string, args: Array<string | number>, signal: AbortSignal | undefined, readOnly = false, on = this.#connections.pick()): Promise<unknown> {
    if (this.#closed) throw new StoreUnavailableError('the store is closed');
    signal?.throwIfAborted();
    const command = [
      readOnly ? 'FCALL_RO' : 'FCALL', `hf${LIBRARY_VERSION}_${name}`, '1', this.#base, this.#origin,
      String(this.#options.historyLimit), ...args.map(String),
    ];
    const run = async (): Promise<unknown> => {
      try {
        return await this.#send(command, on);
      } catch (error) {
        // The function did not run: load the library and call again.
        if (!/function not found/i.test(String((error as Error)?.message))) throw toHoldfastError(error);
        try {
          await this.#loadLibrary();
          return await this.#send(command, on);
        } catch (again) {
          throw toHoldfastError(again);
        }
      }
    };
    return this.#track(run());
  }

  /**
   * A writing function: its value, after publishing its changes and arming the sweep timer.
   * `on`: the connection it goes on (the least busy by default; a grant's WAIT must follow it there).
   */
  async #write(name: string, args: Array<string | number>, signal: AbortSignal | undefined, on = this.#connections.pick()): Promise<FunctionResult> {
    const result = toFunctionResult(await this.#fcall(name, args, signal, false, on));
    this.#hub.publish(result.changes);
    this.#due.arm(result.nextDue, result.now);
    if (result.error) throw new InvalidRequestError(result.error.field, result.error.message);
    return result;
  }

  /**
   * With `replicas`: WAIT until that many replicas have what connection `on` wrote (the grant's
   * call went on it). A lease granted to the caller that too few replicas acknowledged is
   * released again, and the call fails.
   */
  async #replicate(grantedId: string | null, signal: AbortSignal | undefined, on: Connection): Promise<void> {
    if (this.#options.replicas === 0 || grantedId === null) return;
    let acked = 0;
    try {
      acked = Number(await this.#send(['WAIT', String(this.#options.replicas), String(this.#options.replicaTimeoutMs)], on));
    } catch (error) {
      await this.release(grantedId, {}).catch(() => {});
      throw toHoldfastError(error);
    }
    if (acked >= this.#options.replicas) return;
    await this.release(grantedId, { signal }).catch(() => {});
    throw new StoreUnavailableError(
      `only ${acked} of ${this.#options.replicas} replicas acknowledged the grant within ${this.#options.replicaTimeoutMs} ms; it was released again`,
    );
  }

  /** The inbox reader starts with the first ticket this object queues. */
  #startInbox(): void {
    if (this.#inbox !== null || this.#closed) return;
    const reader = this.#connections.first.duplicate({ name: `holdfast-inbox:${this.#options.prefix}`, disableOfflineQueue: false }) as RedisClientType;
    reader.on('error', () => {});
    this.#inbox = new Inbox(reader, `${this.#base}in:${this.#origin}`, (change) => {
      if (!this.#closed) this.#hub.publishOnce(change);
    });
    this.#inbox.start();
  }

  /** True while the inbox reader has an XREAD outstanding (false before the first ticket). */
  get listening(): boolean {
    return this.#inbox?.reading ?? false;
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    const on = this.#connections.pick();
    const result = await this.#write('acquire', [requestJson(request), options.waitMs, options.waiterTtlMs], options.signal, on);
    const outcome = toAcquireOutcome(result.value);
    if (outcome.status === 'queued') this.#startInbox();
    if (outcome.status === 'granted') await this.#replicate(outcome.lease.id, options.signal, on);
    return outcome;
  }

  async poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    const on = this.#connections.pick();
    const outcome = toPollOutcome((await this.#write('poll', [ticket], options.signal, on)).value);
    if (outcome.status === 'queued') this.#startInbox();
    if (outcome.status === 'granted') await this.#replicate(outcome.lease.id, options.signal, on);
    return outcome;
  }

  async cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    return (await this.#write('cancel', [ticket, options.by ?? ''], options.signal)).value === true;
  }

  async renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    return toRenewOutcome((await this.#write('renew', [leaseId, ttlMs], options.signal)).value);
  }

  async release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    return (await this.#write('release', [leaseId, options.by ?? ''], options.signal)).value === true;
  }

  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    const reply = (await this.#fcall('get', [leaseId], options.signal, true)) as [number, string | null];
    return typeof reply[1] === 'string' ? toLease(JSON.parse(reply[1]) as Record<string, unknown>) : null;
  }

  async releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    return Number((await this.#write('release_owner', [owner, options.key ?? '', options.by], options.signal)).value);
  }

  async forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    return Number((await this.#write('force_release', [key, options.by], options.signal)).value);
  }

  async list(options: ListOptions = {}): Promise<LockTable> {
    return toLockTable(await this.#fcall('list', [], options.signal, true), options.prefix ?? '');
  }

  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    const args = [query.key ?? '', query.owner ?? '', query.limit ?? 100, query.beforeId ?? ''];
    return toHistory(await this.#fcall('history', args, options.signal, true));
  }

  async sweep(options: CallOptions = {}): Promise<number | null> {
    const result = await this.#write('sweep', [], options.signal);
    return typeof result.value === 'number' ? result.value : null;
  }

  watch(listener: (change: StoreChange) => void): () => void {
    return this.#hub.watch(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#due.stop();
    await this.#inbox?.close();
    await Promise.allSettled([...this.#pending]);
    this.#hub.clear();
    await this.#connections.close();
  }
}

/** How long opening waits between two tries while Redis answers LOADING. */
const LOADING_RETRY_MS = 50;

/** Runs `step` until it does not fail with Redis's LOADING reply, or `deadline` (ms since the epoch) passes. */
async function whileLoading(deadline: number, timeoutMs: number, step: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      return await step();
    } catch (error) {
      if (!/^LOADING\b/.test(String((error as Error | null)?.message))) throw error;
      if (Date.now() + LOADING_RETRY_MS > deadline) {
        throw new StoreUnavailableError(`Redis was still loading its dataset after ${timeoutMs} ms (connectTimeoutMs)`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, LOADING_RETRY_MS));
    }
  }
}

/**
 * Opens `redis://[user:password@]host:port/N[?prefix=NAME]` (also `rediss://`). `prefix` in the
 * URL or the options names the namespace (the URL wins).
 */
export async function createRedisStore(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new InvalidRequestError('url', 'expected redis://host:port/db, for example redis://127.0.0.1:6379/0', { cause: error });
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new InvalidRequestError('url', 'expected a redis:// or rediss:// URL');
  const prefix = parsed.searchParams.get('prefix');
  for (const name of parsed.searchParams.keys()) {
    if (name !== 'prefix') throw new InvalidRequestError(`url.${name}`, 'unknown parameter of a redis:// URL (expected prefix)');
  }
  parsed.search = '';
  const merged = prefix === null ? options : { ...options, prefix: validatePrefix(prefix, 'url.prefix') };
  return RedisStore.open(parsed.toString(), merged);
}
