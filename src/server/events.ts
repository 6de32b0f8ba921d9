/**
 * The event hub behind `GET /v1/events`: turns the store's `watch()` changes into numbered events,
 * keeps the last ones in a bounded ring buffer so that a client reconnecting with `Last-Event-ID`
 * gets what it missed, and fans them out to subscribers. Event ids are `<boot>.<seq>`: an id from
 * another run of the server (or one that fell out of the buffer, or one from before a gap in the
 * following of other processes: `markGap`) cannot be resumed, and the client is told to reload
 * (`reset`). Events name leases by fence, never by id (a capability).
 */
import { randomBytes } from 'node:crypto';
import type { StoreChange } from '../stores/store.js';
import { iso } from './present.js';

export type EventType = StoreChange['type'] | 'reset';

export interface HubEvent {
  id: string;
  type: EventType;
  keys: string[];
  owner: string;
  fence: number | null;
  at: string;
}

export type Subscriber = (event: HubEvent) => void;

export class EventHub {
  readonly #boot = randomBytes(3).toString('hex');
  /**
   * The last changes, by sequence number modulo the capacity. The event of a change (its id and
   * ISO time) is made only when somebody reads it: a server nobody follows formats nothing.
   */
  readonly #ring: (StoreChange | undefined)[];
  #seq = 0;
  /** Events up to this one may lack what other processes did meanwhile: not resumable. */
  #gapSeq = 0;
  /** performance.now() when the last subscriber left (-Infinity: never, or somebody is there). */
  #lastLeftAt = -Infinity;
  readonly #subscribers = new Set<Subscriber>();

  constructor(capacity: number) {
    this.#ring = new Array<StoreChange | undefined>(Math.max(1, capacity));
  }

  #eventOf(seq: number, change: StoreChange): HubEvent {
    return { id: `${this.#boot}.${seq}`, type: change.type, keys: change.keys, owner: change.owner, fence: change.fence, at: iso(change.at) };
  }

  /** Records a store change and sends it to every subscriber. */
  publish(change: StoreChange): void {
    const seq = ++this.#seq;
    this.#ring[seq % this.#ring.length] = change;
    if (this.#subscribers.size === 0) return;
    const event = this.#eventOf(seq, change);
    for (const subscriber of this.#subscribers) {
      try {
        subscriber(event);
      } catch {
        // A subscriber's failure (a closed socket) is its own.
      }
    }
  }

  /**
   * The events after `lastEventId` still in the buffer, oldest first; `null` when that id cannot
   * be resumed (another boot, or too old): the client must reload its state.
   */
  since(lastEventId: string): HubEvent[] | null {
    const match = /^([0-9a-f]+)\.(\d+)$/.exec(lastEventId.trim());
    if (!match || match[1] !== this.#boot) return null;
    const last = Number(match[2]);
    if (!Number.isSafeInteger(last) || last > this.#seq || last <= this.#gapSeq) return null;
    const oldest = Math.max(1, this.#seq - this.#ring.length + 1);
    if (last + 1 < oldest) return null;
    const out: HubEvent[] = [];
    for (let seq = last + 1; seq <= this.#seq; seq++) {
      const change = this.#ring[seq % this.#ring.length];
      if (change) out.push(this.#eventOf(seq, change));
    }
    return out;
  }

  /**
   * Other processes' events are no longer followed (nobody listens): a client whose last event is
   * from before now cannot resume without missing theirs, so it is told to reload.
   */
  markGap(): void {
    this.#gapSeq = this.#seq;
  }

  /** Whether somebody follows the events, or left less than `windowMs` ago (and may come back to resume). */
  followed(windowMs: number): boolean {
    return this.#subscribers.size > 0 || performance.now() - this.#lastLeftAt < windowMs;
  }

  /** A `reset` event: the client should reload the lock table. Not recorded in the buffer. */
  reset(): HubEvent {
    return { id: `${this.#boot}.${this.#seq}`, type: 'reset', keys: [], owner: '', fence: null, at: new Date().toISOString() };
  }

  /** Called whenever the first subscriber arrives (nobody followed before). */
  onFirstSubscriber: (() => void) | null = null;

  subscribe(subscriber: Subscriber): () => void {
    this.#subscribers.add(subscriber);
    if (this.#subscribers.size === 1) this.onFirstSubscriber?.();
    return () => {
      if (this.#subscribers.delete(subscriber) && this.#subscribers.size === 0) this.#lastLeftAt = performance.now();
    };
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }
}

/** One event in the SSE wire format. */
export function sseFrame(event: HubEvent): string {
  const { id, type, ...data } = event;
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ id, type, ...data })}\n\n`;
}

/** True when the event concerns a key starting with `prefix`. */
export function matchesPrefix(event: HubEvent, prefix: string): boolean {
  return prefix === '' || event.type === 'reset' || event.keys.some((key) => key.startsWith(prefix));
}
