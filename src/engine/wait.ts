/**
 * Waiting in the store's queue until granted, timed out or aborted. The waiter sleeps until the
 * store pushes a grant for its ticket, until the moment a blocker is due to end (`nextCheckMs`),
 * or until its heartbeat is due, whichever comes first; on stores whose pushes only reach this
 * process it also polls with backoff. On timeout or abort it leaves the queue; a lease granted at
 * that moment is released by the store, never stranded. A wait that joined another call's queue
 * place through `requestId` never cancels it: that place belongs to the first call. A wait with
 * `stayQueued` (a server holding a long wait open for at most its maximum) does not leave on
 * timeout either: the place is kept for the client's next call, and `onTicket` has said which.
 *
 * A grant pushed with the new lease's fence and expiry ends the wait without a poll: the lease is
 * the waiter's own request plus those. Its expiry is placed on this process's monotonic clock
 * from the waiter's last answer: the store's clock read `now` after this process sent that call
 * at `sentAt`, so at `sentAt` it was at most `now`, and `sentAt + (expiresAt - now)` comes no
 * later than the store's expiry (clocks running at the same rate, as everywhere in the engine).
 */
import { HoldfastError, LockBusyError, WaitTimeoutError, type Holder } from '../model/errors.js';
import { newLeaseId } from '../model/request.js';
import type { LeaseRecord, LockRequest } from '../model/types.js';
import type { ImmediateCalls, LockStore, PollOutcome, StoreChange } from '../stores/store.js';
import { giveBacksOf } from './give-backs.js';
import type { Heartbeats } from './heartbeats.js';
import type { WakeRouter, Wakeup } from './wakeups.js';

export interface WaitInput {
  store: LockStore;
  router: WakeRouter;
  request: LockRequest;
  ticket: string;
  /** performance.now() when the caller started waiting. */
  startedAt: number;
  waitMs: number;
  waiterTtlMs: number;
  holders: Holder[];
  retryAfterMs: number;
  nextCheckMs: number;
  /** The store's clock in the answer that queued the request. */
  now: number;
  /** performance.now() when that call was sent. */
  sentAt: number;
  signal: AbortSignal | undefined;
  /**
   * At the end of `waitMs`, throw `WAIT_TIMEOUT` but stay in the queue (the store's wait ends at
   * `queueDeadline`). An abort still leaves. @default false
   */
  stayQueued?: boolean | undefined;
  /** performance.now() at which the store's wait ends, for a re-queue. @default startedAt + waitMs */
  queueDeadline?: number | undefined;
  /** Told the ticket and request the wait is queued under whenever they change (a dropped ticket queued again). */
  onTicket?: ((ticket: string, request: LockRequest) => void) | undefined;
  /**
   * The process's batched heartbeat: on a store with `keepAlive` and complete wake-ups, the
   * waiter does not poll for its heartbeat, it polls only when woken, when a blocker is due to
   * end, or when the batch finds its ticket no longer queued. @default undefined (polls)
   */
  heartbeats?: Heartbeats | undefined;
  /**
   * The caller's registration for `ticket`, made before the call that queued it so a grant
   * pushed before its answer is not missed. The caller unregisters it. @default undefined (registers its own)
   */
  wakeup?: Wakeup | undefined;
}

/** A grant: the lease record, and how to place its expiry on this process's monotonic clock. */
export interface Granted {
  lease: LeaseRecord;
  /** performance.now() when the call that returned the grant was sent. */
  sentAt: number;
  /** The store's clock in that call's answer: `lease.expiresAt - now` was left at `sentAt` at most. */
  now: number;
}

const POLL_BACKOFF_MIN_MS = 5;
const POLL_BACKOFF_MAX_MS = 250;
/** When the store drops the ticket this close to the deadline, it is a timeout, not a drop. */
const DEADLINE_SLACK_MS = 50;

/**
 * Gives back a grant that arrived after the caller aborted: released now, or, while the store
 * can't be reached, cancelled again later (`give-backs.ts`; a lease id is also its ticket), so an
 * aborted request never leaves a lease to sit until its TTL.
 */
async function giveBack(store: LockStore, leaseId: string, waiterTtlMs: number): Promise<void> {
  try {
    await store.release(leaseId);
  } catch {
    giveBacksOf(store).add(leaseId, waiterTtlMs);
  }
}

/** What `acquireAndWait` needs: the request, the store's wait for it, and how the wait goes. */
export interface AcquireWaitInput extends Pick<WaitInput, 'store' | 'router' | 'request' | 'waiterTtlMs' | 'signal' | 'stayQueued' | 'onTicket' | 'heartbeats'> {
  /** The store's wait (0: try once). */
  waitMs: number;
  /** How long this call waits, when less than the store's wait (a server holding a long wait open). @default waitMs */
  holdMs?: number | undefined;
  /** The store's synchronous acquire, where it has one (`immediateCallsOf`). @default undefined */
  immediate?: ImmediateCalls | undefined;
}

/**
 * A try-once on a store with synchronous calls (`immediateCallsOf`): answered in this call, with
 * no promise made (on `memory:` the promise and its async frame were a tenth of a pair); the
 * caller (`Locks`) takes this path instead of `acquireAndWait`, which works on any store. Throws
 * LOCK_BUSY. A grant when `signal` had already aborted is given back, and the answer is a rejection.
 */
export function tryOnceNow(
  store: LockStore, immediate: ImmediateCalls, request: LockRequest, waiterTtlMs: number, signal: AbortSignal | undefined,
): Granted | Promise<Granted> {
  const startedAt = performance.now();
  const outcome = immediate.acquire(request, { waitMs: 0, waiterTtlMs, signal });
  if (outcome.status !== 'granted') throw new LockBusyError(outcome);
  // A synchronous call can't be aborted while it runs, but the signal may have been aborted already.
  if (signal?.aborted) return giveBack(store, outcome.lease.id, waiterTtlMs).then(() => Promise.reject(signal.reason));
  return { lease: outcome.lease, sentAt: startedAt, now: outcome.now };
}

/**
 * Sends the request and, when it is queued, waits for its grant (`waitForGrant`). A try-once
 * that is blocked, or one that matched a queued request by requestId, throws LOCK_BUSY and leaves
 * that place alone. A grant that arrives after the signal aborted is released.
 */
export async function acquireAndWait(input: AcquireWaitInput): Promise<Granted> {
  const { store, router, request, waitMs, signal } = input;
  const startedAt = performance.now();
  // Registered before the call, so a grant pushed before the answer arrives is not missed. A
  // try-once is never queued, so no grant can be pushed for it.
  const early = waitMs > 0 ? router.register(request.id) : undefined;
  try {
    // Local stores ignore the signal (an aborted call could strand a grant); stores that wait
    // inside `acquire` (http) honor it and release what they were granted at that moment.
    const options = { waitMs, waiterTtlMs: input.waiterTtlMs, signal };
    const outcome = input.immediate !== undefined ? input.immediate.acquire(request, options) : await store.acquire(request, options);
    if (outcome.status === 'granted') {
      if (signal?.aborted) {
        await giveBack(store, outcome.lease.id, input.waiterTtlMs);
        throw signal.reason;
      }
      return { lease: outcome.lease, sentAt: startedAt, now: outcome.now };
    }
    if (outcome.status === 'busy' || waitMs === 0) throw new LockBusyError(outcome);
    input.onTicket?.(outcome.ticket, request);
    return await waitForGrant({
      store, router, request, ticket: outcome.ticket, startedAt, waitMs: input.holdMs ?? waitMs, waiterTtlMs: input.waiterTtlMs,
      holders: outcome.holders, retryAfterMs: outcome.retryAfterMs, nextCheckMs: outcome.nextCheckMs, now: outcome.now,
      sentAt: startedAt, signal, stayQueued: input.stayQueued, queueDeadline: startedAt + waitMs, onTicket: input.onTicket,
      heartbeats: input.heartbeats, wakeup: outcome.ticket === request.id ? early : undefined,
    });
  } finally {
    if (early !== undefined) router.unregister(request.id, early);
  }
}

export async function waitForGrant(input: WaitInput): Promise<Granted> {
  const { store, router, signal } = input;
  const deadline = input.startedAt + input.waitMs;
  const queueDeadline = Math.max(deadline, input.queueDeadline ?? deadline);
  const heartbeat = Math.max(50, Math.floor(input.waiterTtlMs / 3));
  const polls = store.info.wakeups === 'local';
  const heartbeats = !polls && input.heartbeats?.batched === true ? input.heartbeats : null;
  let request = input.request;
  let ticket = input.ticket;
  /** The registrations this call made (the caller's own, `input.wakeup`, is the caller's to undo). */
  const registered: Array<[string, Wakeup]> = [];
  const register = (t: string): Wakeup => {
    const made = router.register(t);
    registered.push([t, made]);
    return made;
  };
  let wakeup = input.wakeup ?? register(ticket);
  const tickets = [ticket];
  /** A ticket the batched heartbeat lost (granted, dropped, busy): wake the waiter to poll it. */
  const lapsed = (): void => wakeup.wake();
  heartbeats?.add(ticket, lapsed);
  let last = { holders: input.holders, retryAfterMs: input.retryAfterMs, now: input.now };
  let nextCheck = input.nextCheckMs;
  let backoff = POLL_BACKOFF_MIN_MS;
  let lastError: unknown = null;
  /** The last answer's store clock, and when its call was sent (see the top of this file). */
  let clock = { sentAt: input.sentAt, now: input.now };

  const leave = async (): Promise<void> => {
    if (ticket !== request.id) return;
    try {
      await store.cancel(ticket);
    } catch {
      // Unreachable store: a queued ticket is dropped when its heartbeats stop, but one granted
      // at this moment would sit until its TTL, so the cancel is tried again (and at close).
      giveBacksOf(store).add(ticket, input.waiterTtlMs);
    }
  };

  try {
    for (;;) {
      if (signal?.aborted) {
        await leave();
        throw signal.reason;
      }
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        // One last look: a grant that raced the deadline is kept rather than thrown away.
        const sentAt = performance.now();
        const final = await store.poll(ticket).catch(() => null);
        if (final?.status === 'granted') return { lease: final.lease, sentAt, now: final.now };
        if (input.stayQueued !== true) await leave();
        if (final === null && lastError !== null) throw lastError;
        if (final?.status === 'queued') last = final;
        throw new WaitTimeoutError({ ...last, waitedMs: Math.round(performance.now() - input.startedAt) });
      }
      let delay = Math.min(remaining, heartbeats === null ? heartbeat : Infinity, nextCheck + 1);
      if (polls) {
        delay = Math.min(delay, backoff);
        backoff = Math.min(POLL_BACKOFF_MAX_MS, backoff * 2);
      }
      await wakeup.sleep(delay, signal);
      const pushed = wakeup.takeGrant();
      if (pushed !== null && ticket === request.id && pushed.granted.includes(ticket)) {
        const lease = leaseOf(request, pushed);
        if (signal?.aborted) {
          await giveBack(store, lease.id, input.waiterTtlMs);
          throw signal.reason;
        }
        return { lease, ...clock };
      }
      if (signal?.aborted) continue;

      const sentAt = performance.now();
      let outcome: PollOutcome;
      try {
        outcome = await store.poll(ticket);
        lastError = null;
        clock = { sentAt, now: outcome.now };
      } catch (error) {
        if (error instanceof HoldfastError && error.code !== 'STORE_UNAVAILABLE') throw error;
        lastError = error;
        nextCheck = Math.min(1000, Math.max(50, nextCheck * 2));
        continue;
      }
      if (outcome.status === 'granted') {
        if (signal?.aborted) {
          await giveBack(store, outcome.lease.id, input.waiterTtlMs);
          throw signal.reason;
        }
        return { lease: outcome.lease, sentAt, now: outcome.now };
      }
      if (outcome.status === 'queued') {
        last = outcome;
        nextCheck = outcome.nextCheckMs;
        heartbeats?.add(ticket, lapsed);
        continue;
      }
      // Gone: the ticket timed out, was dropped (this process stalled past waiterTtlMs), or was
      // granted and expired before we saw it. Queue again under a fresh id, which no lease had.
      if (deadline - performance.now() <= DEADLINE_SLACK_MS) continue;
      heartbeats?.remove(ticket, lapsed);
      request = { ...request, id: newLeaseId() };
      ticket = request.id;
      wakeup = register(ticket);
      tickets.push(ticket);
      input.onTicket?.(ticket, request);
      const againSentAt = performance.now();
      const left = queueDeadline - performance.now();
      const again = await store.acquire(request, { waitMs: Math.ceil(left), waiterTtlMs: input.waiterTtlMs });
      clock = { sentAt: againSentAt, now: again.now };
      if (again.status === 'granted') return { lease: again.lease, ...clock };
      if (again.status === 'queued') {
        if (again.ticket !== ticket) {
          ticket = again.ticket;
          wakeup = register(ticket);
          tickets.push(ticket);
          input.onTicket?.(ticket, request);
        }
        heartbeats?.add(ticket, lapsed);
        last = again;
        nextCheck = again.nextCheckMs;
      }
    }
  } finally {
    for (const [t, made] of registered) router.unregister(t, made);
    for (const t of tickets) heartbeats?.remove(t, lapsed);
  }
}

/** The lease a pushed grant (with fence and expiry) gives the waiter of `request`. */
function leaseOf(request: LockRequest, grant: StoreChange): LeaseRecord {
  return {
    id: request.id, owner: request.owner, resources: request.resources, fence: grant.fence!, acquiredAt: grant.at,
    expiresAt: grant.expiresAt!, ttlMs: request.ttlMs, requestId: request.requestId, metadata: request.metadata,
    lockDelayMs: request.lockDelayMs,
  };
}
