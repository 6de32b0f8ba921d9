/**
 * Prometheus metrics of the server, on a registry of its own (never prom-client's global one, so
 * several servers in one process, as in tests, do not collide):
 *   holdfast_leases_held, holdfast_waiters            (read from the store at scrape time)
 *   holdfast_acquisitions_total{outcome}              granted | busy | timeout | cancelled | rejected | error
 *   holdfast_wait_seconds{outcome}                    time queued, for requests that waited
 *   holdfast_handoff_seconds                          from a lease's end to the grant reaching the next waiter
 *   holdfast_store_errors_total                       store calls that failed (STORE_UNAVAILABLE)
 *   holdfast_event_subscribers                        open `/v1/events` streams
 * plus prom-client's default process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { LockStore, StoreChange } from '../stores/store.js';

export type AcquireOutcomeLabel = 'granted' | 'busy' | 'timeout' | 'cancelled' | 'rejected' | 'error';

/** How many recently ended keys are remembered for the hand-off histogram (at least half as many). */
const ENDED_KEYS = 10_000;

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #acquisitions: Counter<'outcome'>;
  readonly #wait: Histogram<'outcome'>;
  readonly #handoff: Histogram;
  readonly #storeErrors: Counter;
  /**
   * Store time at which each recently freed key was freed, in two generations: a key is set in
   * the newer, looked up there first, and the older is dropped when the newer is full. Never
   * deleted and set again per change: V8 keeps a deleted entry in its bucket's chain until the
   * map is rebuilt, so re-inserting one hot key beside 10,000 others cost ~26 µs per change.
   */
  #ended = new Map<string, number>();
  #endedBefore = new Map<string, number>();

  constructor(store: LockStore, subscribers: () => number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const tableOf = async (): Promise<{ leases: number; waiters: number }> => {
      const table = await store.list();
      return { leases: new Set(table.locks.map((l) => l.fence)).size, waiters: new Set(table.waiters.map((w) => `${w.owner}\u0000${w.since}`)).size };
    };
    new Gauge({
      name: 'holdfast_leases_held', help: 'Live leases in the store', registers,
      async collect() {
        this.set((await tableOf()).leases);
      },
    });
    new Gauge({
      name: 'holdfast_waiters', help: 'Requests queued in the store', registers,
      async collect() {
        this.set((await tableOf()).waiters);
      },
    });
    new Gauge({
      name: 'holdfast_event_subscribers', help: 'Open /v1/events streams', registers,
      collect() {
        this.set(subscribers());
      },
    });
    this.#acquisitions = new Counter({ name: 'holdfast_acquisitions_total', help: 'Acquire requests by outcome', labelNames: ['outcome'], registers });
    this.#wait = new Histogram({
      name: 'holdfast_wait_seconds', help: 'Time requests spent queued, by outcome', labelNames: ['outcome'], registers,
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900],
    });
    this.#handoff = new Histogram({
      name: 'holdfast_handoff_seconds', help: 'From the end of a lease to its next waiter holding the key', registers,
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    });
    this.#storeErrors = new Counter({ name: 'holdfast_store_errors_total', help: 'Store calls that failed', registers });
  }

  /** Follows store changes to know when keys were freed (for the hand-off histogram). */
  observeChange(change: StoreChange): void {
    if (change.type !== 'released' && change.type !== 'expired' && change.type !== 'forced') return;
    for (const key of change.keys) {
      if (this.#ended.size >= ENDED_KEYS / 2 && !this.#ended.has(key)) {
        this.#endedBefore = this.#ended;
        this.#ended = new Map();
      }
      this.#ended.set(key, change.at);
    }
  }

  acquisition(outcome: AcquireOutcomeLabel, waitedMs: number | null): void {
    this.#acquisitions.inc({ outcome });
    if (waitedMs !== null) this.#wait.observe({ outcome }, waitedMs / 1000);
  }

  /** A waiter was granted at store time `grantedAt` (`now` of the answer): the hand-off latency is from the last end on its keys. */
  handoff(keys: readonly string[], queuedAt: number, grantedAt: number): void {
    let last = -Infinity;
    for (const key of keys) last = Math.max(last, this.#ended.get(key) ?? this.#endedBefore.get(key) ?? -Infinity);
    if (last >= queuedAt && grantedAt >= last) this.#handoff.observe((grantedAt - last) / 1000);
  }

  storeError(): void {
    this.#storeErrors.inc();
  }
}
