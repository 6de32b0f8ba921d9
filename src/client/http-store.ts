/**
 * `http://` and `https://`: a `LockStore` over the HTTP API of a holdfast server, so
 * `openLocks('http://127.0.0.1:7070', { owner, storeOptions: { token } })` gives the same library
 * API as a local store.
 *
 * Waiting happens on the server. `acquire` called with a `signal` (as `Locks` always calls it)
 * sends `waitMs` and the server holds the request open until it grants, times out (409
 * WAIT_TIMEOUT, thrown as `WaitTimeoutError`) or cuts the wait at its own maximum (the answer says
 * `maxWaitMs`; the client then sends the same request, with the same id, again for the rest of its
 * wait, and the server, which kept it queued, goes on in the same queue place: see
 * ../server/long-waits.ts). So it only ever returns `granted` or `busy`. Aborting the signal aborts the
 * HTTP request and cancels the wait by the request's id (`DELETE /v1/tickets/{id}`), answered
 * once the server has left the queue and released a lease granted at that moment: when
 * `acquire` rejects, nothing of the request is left.
 *
 * Called without a signal (a caller speaking the store protocol itself), `acquire` follows that
 * protocol literally: a request that has to wait is queued (`queue: true`) and returned as
 * `queued` with its ticket (the request's id); `poll` and `cancel` then work on it.
 *
 * Deadline anchoring. The engine places a lease's expiry on this process's monotonic clock as
 * `sentAt + (expiresAt - now)`, with `sentAt` taken before it called `acquire`. After a long wait
 * that `sentAt` is stale by the whole wait, and the lease would look (nearly) expired on arrival.
 * So the `now` returned here is the server's `now` moved back by the time between the engine's
 * call and the moment the server had the grant: the send time of the last request plus the
 * server's own time on it (`Server-Timing: grant;dur=`). The deadline is then anchored no later
 * than the moment the grant existed on the server, which is never after the answer's arrival, so
 * it stays on the safe side by at most one network round trip (covered by the safety margin).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { InvalidRequestError, LockBusyError, ServerBusyError, WaitTimeoutError, type Holder } from '../model/errors.js';
import { isLeaseId } from '../model/request.js';
import type { HistoryEvent, HistoryQuery, LeaseRecord, LockRequest, LockTable } from '../model/types.js';
import type {
  AcquireOptions, AcquireOutcome, CallOptions, EndOptions, ForceReleaseOptions, ListOptions, LockStore, OwnerReleaseOptions, PollOutcome,
  RenewOutcome, StoreChange, StoreInfo,
} from '../stores/store.js';
import { leaseFromJson, type LeaseJson } from '../server/present.js';
import { EventFollower } from './events.js';
import { errorOf, Transport, type Answer } from './transport.js';

export interface HttpStoreOptions {
  /** Bearer token of the server's tokens file. @default undefined */
  token?: string | undefined;
  /** Time allowed for an answer (beyond a wait the server holds open). @default 30000 */
  timeoutMs?: number | undefined;
  /**
   * Follow the server's `/v1/events` so `watch` listeners (and `Locks` `change` events) see every
   * change of the store, not only this object's own. @default false
   */
  events?: boolean | undefined;
}

export const HTTP_STORE_DEFAULTS = Object.freeze({ timeoutMs: 30_000, events: false });

/** Slack below which the rest of a cut wait is not worth another request. */
const REWAIT_SLACK_MS = 20;

interface LeaseAnswer {
  lease: LeaseJson;
  now: string;
}

/** The server's clock in an error answer (`now`), or ours. */
function nowOf(answer: Answer): number {
  const now = (answer.body as { error?: { now?: unknown } } | null)?.error?.now;
  return typeof now === 'string' ? Date.parse(now) : Date.now();
}

function serverTimingMs(answer: Answer): number {
  const header = answer.headers['server-timing'];
  const match = typeof header === 'string' ? /(?:^|,)\s*grant;dur=([0-9.]+)/.exec(header) : null;
  return match ? Number(match[1]) : 0;
}

interface QueuedAnswer {
  ticket: string;
  holders: Holder[];
  retryAfterMs: number;
  nextCheckMs: number;
  now: string;
}

export class HttpStore implements LockStore {
  /** `durable` is the server's store's, read from `GET /v1/info` when the store is opened (false if that failed). */
  readonly info: StoreInfo;
  readonly #transport: Transport;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  readonly #follower: EventFollower | null;
  #closed = false;

  constructor(url: string, options: HttpStoreOptions = {}, durable = false) {
    this.info = { kind: 'http', durable, wakeups: 'complete' };
    for (const name of Object.keys(options)) {
      if (!['token', 'timeoutMs', 'events'].includes(name)) throw new InvalidRequestError(`storeOptions.${name}`, 'unknown option of the http store');
    }
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new InvalidRequestError('url', `not a valid URL: ${JSON.stringify(url.slice(0, 80))}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new InvalidRequestError('url', 'expected http:// or https://');
    if (base.username || base.password) throw new InvalidRequestError('url', 'give the token in storeOptions.token, not in the URL');
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) {
      throw new InvalidRequestError('storeOptions.token', 'expected a non-empty string');
    }
    const timeoutMs = options.timeoutMs ?? HTTP_STORE_DEFAULTS.timeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100) throw new InvalidRequestError('storeOptions.timeoutMs', 'expected an integer of at least 100');
    this.#transport = new Transport(base, { token: options.token, timeoutMs });
    this.#follower = options.events ? new EventFollower(this.#transport, (change) => this.#emit(change)) : null;
  }

  #emit(change: StoreChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  #check(): void {
    if (this.#closed) throw new InvalidRequestError('store', 'this http store is closed');
  }

  /** The server's `GET /v1/info`, or null when it cannot be had. */
  async serverInfo(): Promise<{ version?: string; store?: { kind?: string; durable?: boolean }; maxWaitMs?: number } | null> {
    try {
      const answer = await this.#call('GET', 'v1/info');
      return answer.status === 200 ? (answer.body as { store?: { durable?: boolean } }) : null;
    } catch {
      return null;
    }
  }

  async #call(method: string, path: string, options: Parameters<Transport['call']>[2] = {}): Promise<Answer> {
    this.#check();
    return this.#transport.call(method, path, options);
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<AcquireOutcome> {
    const body = {
      id: request.id, owner: request.owner, resources: request.resources, ttlMs: request.ttlMs, requestId: request.requestId,
      metadata: request.metadata, lockDelayMs: request.lockDelayMs,
    };
    if (options.signal === undefined && options.waitMs > 0) return this.#enqueue(body, options);
    const calledAt = performance.now();
    const deadline = calledAt + options.waitMs;
    for (;;) {
      const waitMs = options.waitMs === 0 ? 0 : Math.max(0, Math.ceil(deadline - performance.now()));
      let answer: Answer;
      try {
        answer = await this.#call('POST', 'v1/leases', { body: { ...body, waitMs }, signal: options.signal, holdMs: waitMs });
      } catch (error) {
        if (options.signal?.aborted) await this.#cancelWait(request.id);
        throw error;
      }
      if (answer.status === 201) return this.#granted(answer, calledAt);
      const error = errorOf(answer.status, answer.body);
      if (error instanceof LockBusyError) return { status: 'busy', holders: error.holders, retryAfterMs: error.retryAfterMs, now: nowOf(answer) };
      // The server sheds waits past its bound: queued nowhere, so send again after Retry-After while the wait lasts.
      if (error instanceof ServerBusyError && options.waitMs > 0) {
        const left = deadline - performance.now();
        if (left > REWAIT_SLACK_MS) {
          await delay(Math.min(error.retryAfterMs, left - REWAIT_SLACK_MS), undefined, { signal: options.signal }).catch(() => {
            throw options.signal?.reason ?? error;
          });
          continue;
        }
      }
      if (error instanceof WaitTimeoutError) {
        const cut = (answer.body as { error?: { maxWaitMs?: unknown } }).error?.maxWaitMs !== undefined;
        if (cut && deadline - performance.now() > REWAIT_SLACK_MS) continue;
        // The server keeps a cut request queued for us: not coming back, we end it now.
        if (cut) await this.#cancelWait(request.id);
        throw new WaitTimeoutError({
          holders: error.holders, retryAfterMs: error.retryAfterMs, now: nowOf(answer), waitedMs: Math.round(performance.now() - calledAt),
        });
      }
      throw error;
    }
  }

  /** The grant of a 201 (or granted poll) answer, with `now` moved back to anchor the expiry (see the file's comment). */
  #granted(answer: Answer, calledAt: number): { status: 'granted'; lease: LeaseRecord; now: number } {
    const { lease, now } = answer.body as LeaseAnswer;
    const grantedAt = answer.sentAt + serverTimingMs(answer);
    return { status: 'granted', lease: leaseFromJson(lease), now: Date.parse(now) - (grantedAt - calledAt) };
  }

  /** The aborted request's wait is ended on the server before `acquire` rejects. */
  async #cancelWait(id: string): Promise<void> {
    await this.#transport.call('DELETE', `v1/tickets/${id}`).catch(() => undefined);
  }

  async #enqueue(body: Record<string, unknown>, options: AcquireOptions): Promise<AcquireOutcome> {
    const calledAt = performance.now();
    const answer = await this.#call('POST', 'v1/leases', {
      body: { ...body, waitMs: options.waitMs, waiterTtlMs: options.waiterTtlMs, queue: true },
    });
    if (answer.status === 201) return this.#granted(answer, calledAt);
    if (answer.status === 202) {
      const q = answer.body as QueuedAnswer;
      return { status: 'queued', ticket: q.ticket, holders: q.holders, retryAfterMs: q.retryAfterMs, nextCheckMs: q.nextCheckMs, now: Date.parse(q.now) };
    }
    const error = errorOf(answer.status, answer.body);
    if (error instanceof LockBusyError) return { status: 'busy', holders: error.holders, retryAfterMs: error.retryAfterMs, now: nowOf(answer) };
    throw error;
  }

  async poll(ticket: string, options: CallOptions = {}): Promise<PollOutcome> {
    if (!isLeaseId(ticket)) return { status: 'gone', now: Date.now() };
    const calledAt = performance.now();
    const answer = await this.#call('POST', `v1/tickets/${ticket}/poll`, { signal: options.signal });
    if (answer.status !== 200) throw errorOf(answer.status, answer.body);
    const polled = answer.body as { status: PollOutcome['status']; holders?: Holder[]; retryAfterMs?: number; nextCheckMs?: number; now: string };
    if (polled.status === 'granted') return this.#granted(answer, calledAt);
    const now = Date.parse(polled.now);
    if (polled.status === 'gone') return { status: 'gone', now };
    return { status: 'queued', holders: polled.holders ?? [], retryAfterMs: polled.retryAfterMs ?? 1000, nextCheckMs: polled.nextCheckMs ?? 1000, now };
  }

  /** `by` is sent as who asked; a server with tokens records it after the token's name. */
  async cancel(ticket: string, options: EndOptions = {}): Promise<boolean> {
    if (!isLeaseId(ticket)) return false;
    const answer = await this.#call('DELETE', `v1/tickets/${ticket}`, { query: { by: options.by }, signal: options.signal });
    if (answer.status === 200) return (answer.body as { released: boolean }).released;
    throw errorOf(answer.status, answer.body);
  }

  async renew(leaseId: string, ttlMs: number, options: CallOptions = {}): Promise<RenewOutcome> {
    if (!isLeaseId(leaseId)) return { status: 'unknown', now: Date.now() };
    const calledAt = performance.now();
    const answer = await this.#call('POST', `v1/leases/${leaseId}/renew`, { body: { ttlMs }, signal: options.signal });
    if (answer.status === 200) {
      const { lease, now } = answer.body as LeaseAnswer;
      const renewedAt = answer.sentAt + serverTimingMs(answer);
      return { status: 'renewed', lease: leaseFromJson(lease), now: Date.parse(now) - (renewedAt - calledAt) };
    }
    if (answer.status === 410) return { status: 'lost', now: Date.now() };
    if (answer.status === 404) return { status: 'unknown', now: Date.now() };
    throw errorOf(answer.status, answer.body);
  }

  /** `by` is sent as who asked; a server with tokens records it after the token's name. */
  async release(leaseId: string, options: EndOptions = {}): Promise<boolean> {
    if (!isLeaseId(leaseId)) return false;
    const answer = await this.#call('DELETE', `v1/leases/${leaseId}`, { query: { by: options.by }, signal: options.signal });
    if (answer.status === 200) return (answer.body as { released: boolean }).released;
    throw errorOf(answer.status, answer.body);
  }

  async get(leaseId: string, options: CallOptions = {}): Promise<LeaseRecord | null> {
    if (!isLeaseId(leaseId)) return null;
    const answer = await this.#call('GET', `v1/leases/${leaseId}`, { signal: options.signal });
    if (answer.status === 200) return leaseFromJson((answer.body as LeaseAnswer).lease);
    if (answer.status === 404) return null;
    throw errorOf(answer.status, answer.body);
  }

  async releaseOwner(owner: string, options: OwnerReleaseOptions): Promise<number> {
    const answer = await this.#call('DELETE', `v1/owners/${encodeURIComponent(owner)}/leases`, {
      query: { key: options.key, by: options.by }, signal: options.signal,
    });
    if (answer.status === 200) return (answer.body as { released: number }).released;
    throw errorOf(answer.status, answer.body);
  }

  async forceRelease(key: string, options: ForceReleaseOptions): Promise<number> {
    const answer = await this.#call('DELETE', `v1/locks/${encodeURIComponent(key)}`, { query: { by: options.by }, signal: options.signal });
    if (answer.status === 200) return (answer.body as { released: number }).released;
    throw errorOf(answer.status, answer.body);
  }

  async list(options: ListOptions = {}): Promise<LockTable> {
    const answer = await this.#call('GET', 'v1/locks', { query: { prefix: options.prefix || undefined }, signal: options.signal });
    if (answer.status !== 200) throw errorOf(answer.status, answer.body);
    const { locks, waiters } = answer.body as LockTable;
    return { locks, waiters };
  }

  async history(query: HistoryQuery = {}, options: CallOptions = {}): Promise<HistoryEvent[]> {
    const answer = await this.#call('GET', 'v1/history', {
      query: { key: query.key, owner: query.owner, limit: query.limit, beforeId: query.beforeId }, signal: options.signal,
    });
    if (answer.status !== 200) throw errorOf(answer.status, answer.body);
    return (answer.body as { events: HistoryEvent[] }).events;
  }

  /** The server sweeps its store itself. */
  async sweep(_options?: CallOptions): Promise<number | null> {
    this.#check();
    return null;
  }

  watch(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#follower?.close();
    this.#transport.close();
  }
}

/**
 * Opens the http store (the opener registered for `http:` and `https:`). It asks the server
 * about its store once (`GET /v1/info`, for `info.durable`); a server that cannot be reached
 * then is no error here: the first call that needs it says so.
 */
export async function createHttpStore(url: string, options: HttpStoreOptions = {}): Promise<HttpStore> {
  const probe = new HttpStore(url, { ...options, events: false });
  let durable = false;
  try {
    durable = (await probe.serverInfo())?.store?.durable === true;
  } finally {
    await probe.close();
  }
  return new HttpStore(url, options, durable);
}
