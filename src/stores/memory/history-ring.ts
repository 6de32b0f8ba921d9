/**
 * The memory store's history: the newest `limit` events in a ring of columns. Recording an
 * event writes a slot and allocates nothing; an array of event objects trimmed now and then made
 * two objects per lease that lived through young-generation collections, about a tenth of a
 * lease's cost in this store. Events are made into objects (and their times formatted) when read.
 */
import type { HistoryEvent, HistoryQuery, HistoryType, Resource } from '../../model/types.js';

export class HistoryRing {
  readonly #limit: number;
  /** Id of the newest event (0: none yet); the event with id n is in slot (n - 1) % limit. */
  #last = 0;
  readonly #at: Float64Array;
  readonly #fence: Float64Array;
  readonly #type: HistoryType[] = [];
  readonly #owner: string[] = [];
  readonly #resources: Resource[][] = [];
  readonly #by: Array<string | null> = [];
  readonly #reason: Array<string | null> = [];

  constructor(limit: number) {
    this.#limit = Math.max(1, Math.floor(limit));
    this.#at = new Float64Array(this.#limit);
    this.#fence = new Float64Array(this.#limit);
  }

  record(at: number, type: HistoryType, owner: string, fence: number, resources: Resource[], by: string | null, reason: string | null): void {
    const slot = this.#last % this.#limit;
    this.#last++;
    this.#at[slot] = at;
    this.#fence[slot] = fence;
    // The columns grow to `limit` once, then slots are overwritten.
    if (slot === this.#type.length) {
      this.#type.push(type);
      this.#owner.push(owner);
      this.#resources.push(resources);
      this.#by.push(by);
      this.#reason.push(reason);
    } else {
      this.#type[slot] = type;
      this.#owner[slot] = owner;
      this.#resources[slot] = resources;
      this.#by[slot] = by;
      this.#reason[slot] = reason;
    }
  }

  /** Newest first, filtered as the query asks. */
  read(query: HistoryQuery): HistoryEvent[] {
    const limit = query.limit ?? 100;
    const out: HistoryEvent[] = [];
    const oldest = Math.max(1, this.#last - this.#limit + 1);
    const newest = query.beforeId === undefined ? this.#last : Math.min(this.#last, query.beforeId - 1);
    for (let id = newest; id >= oldest && out.length < limit; id--) {
      const slot = (id - 1) % this.#limit;
      const owner = this.#owner[slot]!;
      if (query.owner !== undefined && owner !== query.owner) continue;
      const resources = this.#resources[slot]!;
      if (query.key !== undefined && !resources.some((r) => r.key === query.key)) continue;
      out.push({
        id, at: new Date(this.#at[slot]!).toISOString(), type: this.#type[slot]!, owner, fence: this.#fence[slot]!, resources,
        by: this.#by[slot]!, reason: this.#reason[slot]!,
      });
    }
    return out;
  }
}
