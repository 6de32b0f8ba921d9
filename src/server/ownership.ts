/**
 * Whose is an id? Every route that takes a lease or ticket id checks the owner behind it against
 * the token before anything changes: a token may act only on ids of owners it may act for (an
 * admin on every id). The owner of an id is found, cheapest first, in what this server holds (a
 * held-open wait, a wait parked after its hold, a grant just answered, a ticket queued with
 * `queue: true`), then in the store (a live lease). An id found nowhere is a lease that ended or
 * never was (lease routes answer as for any such id) or a ticket queued through another server
 * sharing the store, whose owner this server can't tell: ticket routes refuse it to non-admins.
 */
import type { FastifyRequest } from 'fastify';
import { ForbiddenError } from '../model/errors.js';
import { principalOf, type ServerContext } from './context.js';

/** Owners of tickets queued through this server (`queue: true`), until their wait ends. Bounded. */
export class TicketOwners {
  readonly #byTicket = new Map<string, { owner: string; until: number }>();
  constructor(readonly limit = 100_000) {}

  /** Remembers `owner` for `ticket` until `forMs` from now (its wait and some slack). */
  add(ticket: string, owner: string, forMs: number): void {
    this.#byTicket.delete(ticket);
    this.#byTicket.set(ticket, { owner, until: performance.now() + forMs });
    // Oldest first: drop the ones whose wait is over, and the oldest beyond the bound.
    for (const [id, entry] of this.#byTicket) {
      if (this.#byTicket.size <= this.limit && entry.until > performance.now()) break;
      this.#byTicket.delete(id);
    }
  }

  ownerOf(ticket: string): string | null {
    const entry = this.#byTicket.get(ticket);
    if (entry === undefined) return null;
    if (entry.until > performance.now()) return entry.owner;
    this.#byTicket.delete(ticket);
    return null;
  }
}

/** The owner behind a lease or ticket id, or null when neither this server nor the store knows it. */
export async function ownerOfId(ctx: ServerContext, id: string): Promise<string | null> {
  const local = ctx.waits.get(id)?.owner ?? ctx.parked.ownerOf(id) ?? ctx.recent.ownerOf(id) ?? ctx.tickets.ownerOf(id);
  if (local !== null) return local;
  return (await ctx.store.get(id))?.owner ?? null;
}

export interface IdCheck {
  /** What the request does, for the message: `renew a lease`. */
  action: string;
  /** Refuse (non-admins) an id whose owner is unknown: ticket routes. @default false */
  refuseUnknown?: boolean;
  /** Admins too must be allowed the owner (renew acts as the owner). @default false */
  ownerOnly?: boolean;
}

/** Throws FORBIDDEN unless the request's token may act on `id`. Changes nothing. */
export async function authorizeId(ctx: ServerContext, request: FastifyRequest, id: string, check: IdCheck): Promise<void> {
  const principal = principalOf(request);
  if (principal.admin && check.ownerOnly !== true) return;
  const owner = await ownerOfId(ctx, id);
  if (owner === null) {
    if (check.refuseUnknown === true && !principal.admin) {
      throw new ForbiddenError(
        `The token "${principal.name}" may not ${check.action} that was not queued through this server (its owner is unknown here): ` +
          'send it to the server that queued it, or use an admin token',
      );
    }
    return;
  }
  if (!principal.mayActFor(owner)) {
    throw new ForbiddenError(`The token "${principal.name}" may not ${check.action} of owner ${JSON.stringify(owner)}`);
  }
}
