/**
 * Counting proxies: a `LockStore` that counts every call (store round trips, as seen by the
 * engine) and a `pg.Pool` that counts every query the postgres store sends (SQL round trips,
 * which include the store's own follow-ups and sweeps the engine never sees).
 */
import type pg from 'pg';
import {
  StoreUnavailableError, type AcquireOutcome, type LockRequest, type LockStore, type PollOutcome, type StoreChange, type StoreInfo,
  type RenewOutcome, type LeaseRecord, type LockTable, type HistoryEvent,
} from '../src/index.js';

type Params<K extends keyof LockStore> = LockStore[K] extends (...args: infer A) => unknown ? A : never;

export class CallCounter {
  readonly byMethod = new Map<string, number>();
  total = 0;

  count(method: string): void {
    this.total++;
    this.byMethod.set(method, (this.byMethod.get(method) ?? 0) + 1);
  }

  reset(): void {
    this.total = 0;
    this.byMethod.clear();
  }

  /** `acquire 3, poll 2` (most frequent first). */
  describe(): string {
    return [...this.byMethod].sort((a, b) => b[1] - a[1]).map(([m, n]) => `${m} ${n}`).join(', ');
  }
}

export interface CountingOptions {
  /** Close the inner store when this proxy is closed. @default true */
  closeInner?: boolean;
  /** Sees every acquire outcome (to know when a waiter is queued). */
  observe?: (outcome: AcquireOutcome, request: LockRequest) => void;
  /** Runs after the proxy (and the inner store, with `closeInner`) closed. */
  onClose?: () => Promise<void>;
  /** While `gate.down`, every operation fails at once with STORE_UNAVAILABLE (as if the store were gone), so hundreds of waiters end fast. */
  gate?: { down: boolean };
}

/** Forwards every call to `inner`, counting it in `counter` (which several proxies may share). */
export class CountingStore implements LockStore {
  constructor(
    readonly inner: LockStore,
    readonly counter: CallCounter = new CallCounter(),
    readonly options: CountingOptions = {},
  ) {}

  #count(method: string): void {
    if (this.options.gate?.down) throw new StoreUnavailableError('the benchmark is over');
    this.counter.count(method);
  }

  get info(): StoreInfo {
    return this.inner.info;
  }
  async acquire(...args: Params<'acquire'>): Promise<AcquireOutcome> {
    this.#count('acquire');
    const outcome = await this.inner.acquire(...args);
    this.options.observe?.(outcome, args[0]);
    return outcome;
  }
  async poll(...args: Params<'poll'>): Promise<PollOutcome> {
    this.#count('poll');
    return this.inner.poll(...args);
  }
  async cancel(...args: Params<'cancel'>): Promise<boolean> {
    this.#count('cancel');
    return this.inner.cancel(...args);
  }
  async renew(...args: Params<'renew'>): Promise<RenewOutcome> {
    this.#count('renew');
    return this.inner.renew(...args);
  }
  async release(...args: Params<'release'>): Promise<boolean> {
    this.#count('release');
    return this.inner.release(...args);
  }
  async get(...args: Params<'get'>): Promise<LeaseRecord | null> {
    this.#count('get');
    return this.inner.get(...args);
  }
  async releaseOwner(...args: Params<'releaseOwner'>): Promise<number> {
    this.#count('releaseOwner');
    return this.inner.releaseOwner(...args);
  }
  async forceRelease(...args: Params<'forceRelease'>): Promise<number> {
    this.#count('forceRelease');
    return this.inner.forceRelease(...args);
  }
  async list(...args: Params<'list'>): Promise<LockTable> {
    this.#count('list');
    return this.inner.list(...args);
  }
  async history(...args: Params<'history'>): Promise<HistoryEvent[]> {
    this.#count('history');
    return this.inner.history(...args);
  }
  async sweep(...args: Params<'sweep'>): Promise<number | null> {
    this.#count('sweep');
    return this.inner.sweep(...args);
  }
  watch(listener: (change: StoreChange) => void): () => void {
    return this.inner.watch(listener);
  }
  #closing: Promise<void> | null = null;
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.options.closeInner ?? true) await this.inner.close();
      await this.options.onClose?.();
    })();
    return this.#closing;
  }
}

/**
 * A `pg.Pool` whose `query` calls are counted (the postgres store runs every operation as one
 * `pool.query`). Give it as `storeOptions.pool`; the store never ends a pool it was given.
 */
export function countingPool(pool: pg.Pool, counter: CallCounter): pg.Pool {
  return new Proxy(pool, {
    get(target, property, receiver) {
      if (property === 'query') {
        return (...args: unknown[]) => {
          const text = typeof args[0] === 'string' ? args[0] : '';
          counter.count(/\.(hf_[a-z_]+)\(/.exec(text)?.[1] ?? 'sql');
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
