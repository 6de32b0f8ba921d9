/**
 * What the route modules share: the `Locks` object (its `grant()` hands out lease records that
 * nothing renews or releases on the server side, since clients renew over HTTP and a server
 * shutdown must not end their leases), the store, the event hub, metrics, the token table, and
 * the route table from which `/openapi.json` is generated.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { Locks } from '../engine/locks.js';
import type { WakeRouter } from '../engine/wakeups.js';
import type { LockStore } from '../stores/store.js';
import { UnauthorizedError } from '../model/errors.js';
import { ANONYMOUS, type Principal } from './auth.js';
import type { EventHub } from './events.js';
import type { Heartbeats } from '../engine/heartbeats.js';
import type { ParkedWaits } from './long-waits.js';
import type { ServerMetrics } from './metrics.js';
import type { TicketOwners } from './ownership.js';
import type { ResolvedServerOptions } from './options.js';
import type { JsonSchema } from './schemas.js';

/** A held-open acquire, by the id its client gave, so that `DELETE /v1/tickets/{id}` can end it. */
export interface InflightWait {
  readonly owner: string;
  /** Ends the wait (leaves the queue; a lease granted at that moment is released, `by` recorded as who asked). */
  cancel(by: string | undefined): void;
  /** Settles when the request is done, queue left and any undelivered lease released; true if one was. */
  readonly settled: Promise<boolean>;
}

/**
 * Leases handed out recently to held-open requests that gave an `id`, by that id: a client whose
 * wait was aborted as the answer was on its way cancels by id, and the lease it never read is
 * released. Bounded in size and age.
 */
export class RecentGrants {
  readonly #byId = new Map<string, { leaseId: string; owner: string; at: number }>();
  constructor(readonly limit = 10_000, readonly maxAgeMs = 120_000) {}

  add(id: string, leaseId: string, owner: string): void {
    this.#byId.set(id, { leaseId, owner, at: performance.now() });
    // The oldest tenth goes at once: deleting one oldest entry per add walked the Map's deleted
    // slots each time (3% of the server's CPU at 64 clients).
    if (this.#byId.size > this.limit) {
      let excess = this.#byId.size - this.limit + Math.ceil(this.limit / 10);
      for (const key of this.#byId.keys()) {
        if (excess-- <= 0) break;
        this.#byId.delete(key);
      }
    }
  }

  /** The owner of the lease granted to `id` (kept). */
  ownerOf(id: string): string | null {
    const entry = this.#byId.get(id);
    return entry && performance.now() - entry.at <= this.maxAgeMs ? entry.owner : null;
  }

  /** The lease granted to `id`, forgotten once taken. */
  take(id: string): { leaseId: string; owner: string } | null {
    const entry = this.#byId.get(id);
    this.#byId.delete(id);
    return entry && performance.now() - entry.at <= this.maxAgeMs ? entry : null;
  }
}

export interface ServerContext {
  readonly locks: Locks;
  readonly store: LockStore;
  readonly hub: EventHub;
  readonly metrics: ServerMetrics;
  readonly options: ResolvedServerOptions;
  /** Aborts when the server starts shutting down: waits end, streams close. */
  readonly shutdown: AbortSignal;
  /** Acquires in progress, by the id the client gave. */
  readonly waits: Map<string, InflightWait>;
  /** Leases recently granted to acquires that gave an id. */
  readonly recent: RecentGrants;
  /** Push wake-ups of the store, routed to the server's own long waits. */
  readonly router: WakeRouter;
  /** Waits cut at `maxWaitMs`, kept queued for their clients' next call, by the id they gave. */
  readonly parked: ParkedWaits;
  /** Owners of the tickets queued through this server, for the authorization of ticket routes. */
  readonly tickets: TicketOwners;
  /** Waits held open right now (`POST /v1/leases` with `waitMs`), for the `maxWaiters` bound with `parked`. */
  readonly holding: { count: number };
  /** One batched heartbeat for the server's own waits (held open and parked). */
  readonly heartbeats: Heartbeats;
}

/** `none`: open to all; `token`: any valid token (the handler checks owners and admin rights). */
export type Access = 'none' | 'token';

export interface RouteSchema {
  body?: JsonSchema;
  params?: JsonSchema;
  querystring?: JsonSchema;
  response?: Record<string, JsonSchema>;
}

export interface RouteSpec {
  method: HTTPMethods;
  url: string;
  operationId: string;
  summary: string;
  access: Access;
  schema: RouteSchema;
  /** Answers that are not JSON (the dashboard, metrics, events). */
  produces?: string;
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/**
 * Per-request state kept on the request itself, in fields Fastify creates with every request
 * (`decorateRequests`): a `WeakMap` entry per request cost ~1.5 µs each and more in the
 * garbage collector (its ephemeron table) at a few thousand requests a second.
 */
const PRINCIPAL = Symbol('holdfast.principal');
const STARTED = Symbol('holdfast.started');

interface Tracked {
  [PRINCIPAL]: Principal | null;
  [STARTED]: number;
}

const tracked = (request: FastifyRequest): FastifyRequest & Tracked => request as FastifyRequest & Tracked;

/** Declares the per-request fields on `app`, before any route or hook is added. */
export function decorateRequests(app: FastifyInstance): void {
  app.decorateRequest(PRINCIPAL, null);
  app.decorateRequest(STARTED, -1);
}

export function setPrincipal(request: FastifyRequest, principal: Principal): void {
  tracked(request)[PRINCIPAL] = principal;
}

/** Who made the request (anonymous admin when no tokens are configured). Fails closed when unset. */
export function principalOf(request: FastifyRequest): Principal {
  const principal = tracked(request)[PRINCIPAL];
  if (principal === null || principal === undefined) throw new UnauthorizedError();
  return principal;
}

export function markStart(request: FastifyRequest): void {
  tracked(request)[STARTED] = performance.now();
}

/** Milliseconds since the server received the request. */
export function elapsedMs(request: FastifyRequest): number {
  const start = tracked(request)[STARTED];
  return start === undefined || start < 0 ? 0 : performance.now() - start;
}

/**
 * Who ends a lease by id, for its history event: with tokens, the token's name (and the `by` it
 * gave); without tokens, the `by` given, or nobody but the owner (undefined: the store records
 * the lease's owner).
 */
export function idActorOf(request: FastifyRequest, by: string | undefined): string | undefined {
  return principalOf(request) === ANONYMOUS ? by : actorOf(request, by);
}

export function actorOf(request: FastifyRequest, by: string | undefined): string {
  const principal = principalOf(request);
  if (principal === ANONYMOUS) return by ?? `http:${request.ip}`;
  return by === undefined || by === principal.name ? principal.name : `${principal.name}:${by}`;
}
