/**
 * Follows the store's history for what OTHER processes did, so that `GET /v1/events` (and the
 * dashboard, which refreshes on events) shows every acquire and release on a store shared by
 * several servers or `Locks` processes, not only this server's own.
 *
 * A store reports its own process's changes through `watch()`, and a Postgres store also the
 * grants other processes made (their NOTIFY). Everything else another process does (acquires,
 * releases, expiries it settled, forced releases) reaches this server only through the shared
 * history. So, while somebody follows the event stream (or left it less than the server's
 * `resumeWindowMs` ago, and may come back with `Last-Event-ID`), the follower reads the newest history
 * events every `intervalMs` and publishes those this process has not already published: an event
 * is known by its type and fence (a lease has one fence, one `acquired` event and one ending
 * event). It reads a window of the newest events, paging back while the whole window is new, up
 * to `MAX_PAGES` pages; a history id seen in the previous window is not read twice, and an event
 * committed late with a lower id is still found while it is in the window.
 *
 * Not for the memory store (one process by construction). Costs nothing while nobody follows.
 */
import type { HistoryEvent } from '../model/types.js';
import type { LockStore, StoreChange } from '../stores/store.js';

const PAGE = 100;
const MAX_PAGES = 10;
/** How many of this process's own events are remembered (type and fence), to skip them in the history. */
const LOCAL_REMEMBERED = 20_000;

export interface HistoryFollowerOptions {
  store: LockStore;
  intervalMs: number;
  /** Whether anybody follows the events now. */
  active(): boolean;
  /** Publishes a change another process made. */
  publish(change: StoreChange): void;
  /**
   * Following stops (nobody follows any more): what other processes do until it starts again is
   * not streamed, then or ever.
   */
  onPause(): void;
  /** A read that failed (the next interval tries again). */
  onError(error: unknown): void;
}

export class HistoryFollower {
  readonly #options: HistoryFollowerOptions;
  readonly #local = new Set<string>();
  #seen: Set<number> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #reading = false;
  #stopped = false;

  constructor(options: HistoryFollowerOptions) {
    this.#options = options;
  }

  /**
   * Remembers a change of this process (from the store's `watch()`); false when the follower has
   * published it already (read from the history before the store reported it), so it is not
   * published twice.
   */
  noteLocal(change: StoreChange): boolean {
    if (change.fence === null) return true;
    const name = eventName(change.type, change.fence);
    if (this.#local.has(name)) return false;
    this.#remember(name);
    return true;
  }

  #remember(name: string): void {
    this.#local.add(name);
    if (this.#local.size > LOCAL_REMEMBERED) {
      const oldest = this.#local.values().next();
      if (!oldest.done) this.#local.delete(oldest.value);
    }
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => void this.tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One read of the history: the timer's work, and the server's when the first follower arrives. */
  async tick(): Promise<void> {
    if (this.#reading || this.#stopped) return;
    if (!this.#options.active()) {
      // Nobody follows: what happens meanwhile is not streamed; start afresh when somebody does.
      if (this.#seen !== null) this.#options.onPause();
      this.#seen = null;
      return;
    }
    this.#reading = true;
    try {
      const window = await this.#window();
      if (this.#stopped) return;
      const seen = this.#seen;
      this.#seen = new Set(window.map((e) => e.id));
      // The first window after a start is the past: a follower's baseline, not news.
      if (seen === null) return;
      for (const event of window.slice().reverse()) {
        if (seen.has(event.id)) continue;
        const name = eventName(event.type, event.fence);
        if (this.#local.has(name)) continue;
        this.#remember(name);
        this.#options.publish({
          type: event.type, granted: [], keys: event.resources.map((r) => r.key), owner: event.owner, fence: event.fence,
          at: Date.parse(event.at),
        });
      }
    } catch (error) {
      // A read cut off by the server's shutdown (the store closing) is not a failure.
      if (!this.#stopped) this.#options.onError(error);
    } finally {
      this.#reading = false;
    }
  }

  /** The newest events, newest first: one page, or more while every event of a page is new. */
  async #window(): Promise<HistoryEvent[]> {
    const out: HistoryEvent[] = [];
    let beforeId: number | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const events = await this.#options.store.history(beforeId === undefined ? { limit: PAGE } : { limit: PAGE, beforeId });
      out.push(...events);
      const seen = this.#seen;
      if (seen === null || events.length < PAGE || events.some((e) => seen.has(e.id))) break;
      beforeId = events[events.length - 1]!.id;
    }
    return out;
  }
}

function eventName(type: string, fence: number): string {
  return `${type}:${fence}`;
}
