/**
 * Waits longer than the server's `maxWaitMs` keep their queue place.
 *
 * The server holds a waiting `POST /v1/leases` open for at most `maxWaitMs`, then answers 409
 * WAIT_TIMEOUT with `maxWaitMs` so the client sends the request again for the rest of its wait.
 * Such a request is queued in the store for its whole `waitMs`, and when the hold runs out it is
 * not taken out of the queue: it is parked here, under the `id` the client gave, for
 * `waiterTtlMs`. The parked ticket's heartbeat goes on (a poll every `waiterTtlMs / 3`), so the
 * store keeps it; a grant made meanwhile is kept too. When the client sends the same request (same
 * `id`, same owner and resources) again in that time, the wait goes on under the same ticket, in
 * the same queue place, or answers the lease granted meanwhile. When it does not come back, the
 * ticket is cancelled, which releases a lease granted to it meanwhile: nothing is stranded.
 *
 * The place lives in this server: a request sent again to another server behind the same load
 * balancer queues anew (at the end), and the first server cancels its parked ticket. A request
 * without an `id` can't be matched, so it queues anew too.
 */
import { isDeepStrictEqual } from 'node:util';
import { InvalidRequestError, WaitTimeoutError } from '../model/errors.js';
import { newLeaseId } from '../model/request.js';
import type { LockRequest } from '../model/types.js';
import type { LockStore } from '../stores/store.js';
import { acquireAndWait, waitForGrant, type Granted, type WaitInput } from '../engine/wait.js';
import type { Heartbeats } from '../engine/heartbeats.js';
import type { WakeRouter } from '../engine/wakeups.js';

/** A request whose hold ran out, still queued (or granted meanwhile), waiting for its client. */
export interface Parked {
  readonly request: LockRequest;
  readonly ticket: string;
  /** performance.now() at which the store's wait ends. */
  readonly queueDeadline: number;
  /** A heartbeat saw it granted: no more heartbeats, only the end of the parking time. */
  granted: boolean;
  timer: NodeJS.Timeout | null;
  readonly until: number;
  /** Its registration in the batched heartbeat (called when the batch no longer finds it queued). */
  lapse: (() => void) | null;
}

export interface ParkedWaitsOptions {
  store: LockStore;
  /** How long a parked request waits for its client, and its heartbeat period times three. */
  waiterTtlMs: number;
  /** Errors of background calls (heartbeats, cancels): logged, never thrown. */
  onError: (error: unknown, what: string) => void;
  /** The server's batched heartbeat (used when the store has `keepAlive`). @default undefined (a poll per parked wait) */
  heartbeats?: Heartbeats | undefined;
}

export class ParkedWaits {
  readonly #byId = new Map<string, Parked>();
  readonly #options: ParkedWaitsOptions;

  constructor(options: ParkedWaitsOptions) {
    this.#options = options;
  }

  /** Keeps a cut request's place for its client (replacing nothing: ids of waits in progress are unique). */
  park(id: string, request: LockRequest, ticket: string, queueDeadline: number): void {
    const parked: Parked = {
      request, ticket, queueDeadline, granted: false, timer: null, lapse: null, until: performance.now() + this.#options.waiterTtlMs,
    };
    this.#byId.set(id, parked);
    this.#schedule(id, parked);
  }

  /**
   * Takes the parked request of `id` for its client's next call, or null when none is parked.
   * A parked request of another owner or for other resources is left alone and the call rejected.
   */
  take(id: string, owner: string, resources?: LockRequest['resources']): Parked | null {
    const parked = this.#byId.get(id);
    if (parked === undefined) return null;
    if (parked.request.owner !== owner || (resources !== undefined && !isDeepStrictEqual(parked.request.resources, resources))) {
      throw new InvalidRequestError('id', 'a different request with this id is waiting');
    }
    this.#forget(id, parked);
    return parked;
  }

  /** Requests parked now. */
  get size(): number {
    return this.#byId.size;
  }

  /** The owner of the request parked under `id`, or null. */
  ownerOf(id: string): string | null {
    return this.#byId.get(id)?.request.owner ?? null;
  }

  /** Its client ends the parked request: it leaves the queue; true when a lease granted to it meanwhile was released. */
  async cancel(id: string, by?: string): Promise<boolean> {
    const parked = this.#byId.get(id);
    if (parked === undefined) return false;
    this.#forget(id, parked);
    return this.#options.store.cancel(parked.ticket, { by });
  }

  /** Leaves the queue for every parked request (the server is shutting down). */
  async close(): Promise<void> {
    const all = [...this.#byId.keys()];
    await Promise.all(all.map((id) => this.#drop(id)));
  }

  #forget(id: string, parked: Parked): void {
    this.#byId.delete(id);
    if (parked.timer !== null) clearTimeout(parked.timer);
    parked.timer = null;
    if (parked.lapse !== null) this.#options.heartbeats?.remove(parked.ticket, parked.lapse);
    parked.lapse = null;
  }

  /**
   * The next heartbeat, or the end of the parking time, whichever comes first. With the batched
   * heartbeat, only the end: the batch keeps the ticket, and one it lost is polled (granted: no
   * more beats; still queued, its row busy a moment: back in the batch; gone: nothing to keep).
   */
  #schedule(id: string, parked: Parked): void {
    const heartbeat = Math.max(50, Math.floor(this.#options.waiterTtlMs / 3));
    const left = parked.until - performance.now();
    const batch = this.#options.heartbeats;
    if (batch?.batched === true && !parked.granted) {
      parked.lapse ??= () => void this.#lapsed(id, parked);
      batch.add(parked.ticket, parked.lapse);
      parked.timer = setTimeout(() => void this.#drop(id), Math.max(0, left));
      parked.timer.unref();
      return;
    }
    const beat = !parked.granted;
    parked.timer = setTimeout(() => void this.#tick(id, parked), beat ? Math.min(heartbeat, Math.max(0, left)) : Math.max(0, left));
    parked.timer.unref();
  }

  async #tick(id: string, parked: Parked): Promise<void> {
    parked.timer = null;
    if (this.#byId.get(id) !== parked) return;
    if (performance.now() >= parked.until) {
      await this.#drop(id);
      return;
    }
    try {
      const outcome = await this.#options.store.poll(parked.ticket);
      if (outcome.status === 'granted') parked.granted = true;
    } catch (error) {
      this.#options.onError(error, 'heartbeat of a parked wait');
    }
    if (this.#byId.get(id) === parked) this.#schedule(id, parked);
  }

  async #lapsed(id: string, parked: Parked): Promise<void> {
    if (this.#byId.get(id) !== parked) return;
    try {
      const outcome = await this.#options.store.poll(parked.ticket);
      if (this.#byId.get(id) !== parked) return;
      if (outcome.status === 'granted') parked.granted = true;
      else if (outcome.status === 'queued' && parked.lapse !== null) this.#options.heartbeats?.add(parked.ticket, parked.lapse);
    } catch (error) {
      this.#options.onError(error, 'heartbeat of a parked wait');
      if (this.#byId.get(id) === parked && parked.lapse !== null) this.#options.heartbeats?.add(parked.ticket, parked.lapse);
    }
  }

  /** Cancels the ticket of a request whose client did not come back (a lease granted to it is released). */
  async #drop(id: string): Promise<void> {
    const parked = this.#byId.get(id);
    if (parked === undefined) return;
    this.#forget(id, parked);
    try {
      await this.#options.store.cancel(parked.ticket);
    } catch (error) {
      // Queued: the store drops it when its heartbeats stop; granted: it ends by its TTL.
      this.#options.onError(error, 'cancel of a parked wait');
    }
  }
}

export interface LongWaitInput {
  store: LockStore;
  router: WakeRouter;
  parked: ParkedWaits;
  /** The client's handle (`id`); without one, the place can't be kept past the hold. */
  id: string | undefined;
  /** The validated request (its `id` is replaced by a fresh ticket for a new wait). */
  request: LockRequest;
  /** The rest of the client's wait. */
  waitMs: number;
  /** How long this call may hold: the server's `maxWaitMs`, at most `waitMs`. */
  holdMs: number;
  waiterTtlMs: number;
  /** The request taken from `parked` when the client came back. */
  resumed: Parked | null;
  signal: AbortSignal;
  /** The server's batched heartbeat. @default undefined */
  heartbeats?: Heartbeats | undefined;
}

/**
 * Waits up to `holdMs` of a longer wait: returns the grant, or throws WAIT_TIMEOUT after parking
 * the request when the hold cut the wait short and the client gave an `id`, LOCK_BUSY (a
 * requestId matched a queued place), or the signal's reason (queue left).
 */
export async function holdLongWait(input: LongWaitInput): Promise<Granted> {
  const { id, resumed, signal } = input;
  const cut = id !== undefined && input.holdMs < input.waitMs;
  const queueDeadline = resumed?.queueDeadline ?? performance.now() + input.waitMs;
  /** The ticket and request the wait is queued under (they change when a dropped ticket queues again). */
  const place: { ticket?: string; request?: LockRequest } = {};
  const how = {
    store: input.store, router: input.router, waiterTtlMs: input.waiterTtlMs, signal, stayQueued: cut, heartbeats: input.heartbeats,
    onTicket: (ticket: string, request: LockRequest): void => {
      place.ticket = ticket;
      place.request = request;
    },
  };
  try {
    return resumed !== null
      ? await resumeWait(resumed, input.holdMs, how)
      : await acquireAndWait({ ...how, request: { ...input.request, id: newLeaseId() }, waitMs: input.waitMs, holdMs: input.holdMs });
  } catch (error) {
    // Cut by the hold: the place is kept for the client's next call (a ticket of another call,
    // joined through requestId, is that call's to keep).
    const { ticket, request } = place;
    if (cut && error instanceof WaitTimeoutError && !signal.aborted && request !== undefined && ticket === request.id) {
      input.parked.park(id, request, ticket, queueDeadline);
    }
    throw error;
  }
}

/** Goes on waiting for a parked request whose client came back. */
async function resumeWait(
  parked: Parked, holdMs: number, how: Pick<WaitInput, 'store' | 'router' | 'waiterTtlMs' | 'signal' | 'stayQueued' | 'onTicket' | 'heartbeats'>,
): Promise<Granted> {
  const { store, router } = how;
  const { request, ticket } = parked;
  const startedAt = performance.now();
  // Registered before the poll, so a grant pushed before its answer arrives is not missed.
  const early = router.register(ticket);
  try {
    // Anything may have happened while it was parked: look first. (A grant is read again, not
    // taken from the heartbeat that saw it, so its `now` places the expiry from this call.)
    const polled = await store.poll(ticket);
    if (polled.status === 'granted') return { lease: polled.lease, sentAt: startedAt, now: polled.now };
    how.onTicket?.(ticket, request);
    const first = polled.status === 'queued' ? polled : { holders: [], retryAfterMs: 0, nextCheckMs: 0, now: polled.now };
    return await waitForGrant({
      ...how, request, ticket, startedAt, waitMs: holdMs, queueDeadline: parked.queueDeadline, sentAt: startedAt,
      holders: first.holders, retryAfterMs: first.retryAfterMs, nextCheckMs: first.nextCheckMs, now: first.now, wakeup: early,
    });
  } finally {
    router.unregister(ticket, early);
  }
}
