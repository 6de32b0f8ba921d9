/**
 * One unref'd timer at the earliest due time a store has heard of (a lease's expiry, a waiter's
 * deadline, a lock-delay's end), calling `fire` then, so expired leases end and queues move
 * without anyone asking. An earlier due time re-arms it; a later one changes nothing. Due times
 * are store time, `now` the store time they were read at: the delay is their difference, so the
 * client's clock never decides anything. Already due: fires after `overdueMs` (a remote store's
 * sweep takes a round trip; no busy loop).
 */
export class DueTimer {
  readonly #fire: () => void;
  #timer: NodeJS.Timeout | null = null;
  /** performance.now() at which the timer fires, and the store time it was armed for. */
  #at = Infinity;
  #due = Infinity;
  readonly #overdueMs: number;
  #stopped: boolean;

  /**
   * `enabled: false` (a store opened with `autoSweep: false`) never fires. `overdueMs` (default 25)
   * is the delay for a due time already past when armed.
   */
  constructor(options: { enabled: boolean; fire: () => void; overdueMs?: number }) {
    this.#fire = options.fire;
    this.#stopped = !options.enabled;
    this.#overdueMs = options.overdueMs ?? 25;
  }

  arm(due: number | null, now: number): void {
    if (this.#stopped || due === null) return;
    // Armed for a due time no later: it fires in time for this one too (the common case, each
    // new lease expiring after the ones before it), decided without reading the clock.
    if (this.#timer !== null && this.#due <= due) return;
    const delay = due <= now ? this.#overdueMs : due - now + 1;
    const at = performance.now() + delay;
    if (this.#timer !== null && this.#at <= at) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#at = at;
    this.#due = due;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#at = Infinity;
      this.#due = Infinity;
      this.#fire();
    }, Math.min(delay, 2_147_000_000));
    this.#timer.unref();
  }

  /** For good: a closed store arms nothing again. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
