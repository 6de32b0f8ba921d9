/**
 * One timer for every lease of a `Locks` object: each lease's next renewal (or self-fencing
 * deadline) is an entry in a binary heap ordered by due time, and a single unref'd Node timer is
 * armed at the earliest. A lease that renews or is released moves or removes its entry
 * (O(log n)); the timer is re-armed only when an entry due sooner than it appears, and left to
 * fire (finding nothing due, then re-arming at the next entry, if any) when its entry goes. A
 * Node `Timeout` per lease cost ~150 bytes and a timer-list insert and removal per lease.
 *
 * Callbacks never throw out of the timer: an exception is caught and dropped (a lease's own
 * callback reports through its signal and events, never by throwing).
 */
export interface ClockEntry {
  /** performance.now() at which it is due. */
  at: number;
  readonly fire: () => void;
  /** Position in the heap; -1 when not scheduled. */
  index: number;
}

export class LeaseClock {
  readonly #heap: ClockEntry[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** performance.now() at which the timer fires. */
  #timerAt = Infinity;
  #closed = false;

  /** Number of scheduled entries. */
  get size(): number {
    return this.#heap.length;
  }

  /** An entry for `fire`, not scheduled yet. */
  entry(fire: () => void): ClockEntry {
    return { at: Infinity, fire, index: -1 };
  }

  /** Schedules `entry` at `at` (performance.now() time), moving it if it was scheduled. */
  schedule(entry: ClockEntry, at: number): void {
    if (this.#closed) return;
    if (entry.index === -1) {
      entry.at = at;
      entry.index = this.#heap.length;
      this.#heap.push(entry);
      this.#up(entry.index);
    } else {
      const earlier = at < entry.at;
      entry.at = at;
      if (earlier) this.#up(entry.index);
      else this.#down(entry.index);
    }
    if (at < this.#timerAt) this.#arm(at);
  }

  cancel(entry: ClockEntry): void {
    const i = entry.index;
    if (i === -1) return;
    entry.index = -1;
    const last = this.#heap.pop()!;
    if (last === entry) return;
    this.#heap[i] = last;
    last.index = i;
    this.#down(i);
    this.#up(last.index);
  }

  /** Cancels everything and arms nothing again. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#heap) entry.index = -1;
    this.#heap.length = 0;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(at - performance.now())));
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = null;
    this.#timerAt = Infinity;
    const now = performance.now();
    const heap = this.#heap;
    while (heap.length > 0 && heap[0]!.at <= now) {
      const entry = heap[0]!;
      this.cancel(entry);
      try {
        entry.fire();
      } catch {
        // Never thrown from a timer.
      }
    }
    if (heap.length > 0 && !this.#closed && this.#timer === null) this.#arm(heap[0]!.at);
  };

  #up(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= entry.at) break;
      const moved = heap[parent]!;
      heap[i] = moved;
      moved.index = i;
      i = parent;
    }
    heap[i] = entry;
    entry.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && heap[right]!.at < heap[left]!.at ? right : left;
      if (heap[child]!.at >= entry.at) break;
      const moved = heap[child]!;
      heap[i] = moved;
      moved.index = i;
      i = child;
    }
    heap[i] = entry;
    entry.index = i;
  }
}
