/**
 * Reads a root of the cache again, in the background, as soon as another process wrote it, when
 * this store object holds a lease there (or was just granted one): its next operation on that
 * root (a release, a renewal) is near, and on the stale copy that operation's transaction would
 * first fail its compare and only then commit (two transactions instead of one: a hand-off
 * between two processes took two). Only a lease's holder reads again, not every waiter on the
 * root, so one write costs one read, not one per waiter.
 *
 * Safety does not depend on it: every transaction still compares the root's version record, a
 * copy older than the cached one is never put in its place, and no copy is put in the cache while
 * a batch prepares (the store's `absorb` drops it then): between reading the cache for the roots
 * an operation concerns and copying those roots into its table, a new copy of one root could
 * name a lease or waiter on a root the batch did not read, whose conflicts the transaction would
 * then neither see nor compare.
 */
import type { StoreChange } from '../store.js';
import type { KeyValue } from './client.js';
import { revisionOfOne } from './reads.js';
import type { RootState } from './table.js';

/** The ids of leases and tickets remembered (the oldest are forgotten past this). */
const MINE_KEPT = 10_000;
/** The longest a batch waits for the re-reads in flight (one takes about a millisecond). */
const SETTLE_WAIT_MS = 20;

export interface RefreshOptions {
  /** The cached copy of `root`, if any. */
  cached(root: string): RootState | undefined;
  /** Reads `root`: what the ranges of `rangesOf(layout, [root])` return (reads.ts). */
  read(root: string): Promise<KeyValue[][]>;
  /** Puts what `read` returned in the cache (unless a batch is preparing). */
  absorb(root: string, ranges: KeyValue[][]): void;
}

export class RootRefresh {
  readonly #options: RefreshOptions;
  /** Ids of leases and tickets this object asked for (insertion order: the oldest first). */
  readonly #mine = new Set<string>();
  /** Roots being read again now, and when each read has ended. */
  readonly #reading = new Map<string, Promise<void>>();
  #closed = false;

  constructor(options: RefreshOptions) {
    this.#options = options;
  }

  /** A lease or ticket id this object asked for. */
  remember(id: string): void {
    this.#mine.add(id);
    if (this.#mine.size > MINE_KEPT) {
      for (const oldest of this.#mine) {
        this.#mine.delete(oldest);
        break;
      }
    }
  }

  /** A lease or ticket of this object that ended (released, cancelled). */
  forget(id: string): void {
    this.#mine.delete(id);
  }

  /** Another process wrote `root` at `modRevision`, with these changes. */
  written(root: string, modRevision: number, changes: readonly StoreChange[]): void {
    if (this.#closed || this.#reading.has(root)) return;
    const cached = this.#options.cached(root);
    if (cached === undefined || cached.revision >= modRevision) return;
    const holds = cached.leases.some((lease) => this.#mine.has(lease.id))
      || changes.some((change) => change.type === 'acquired' && change.granted.some((id) => this.#mine.has(id)));
    if (!holds) return;
    const done = this.#reread(root).catch(() => {
      // The next operation on the root reads it (or fails its compare and reads it then).
    }).finally(() => this.#reading.delete(root));
    this.#reading.set(root, done);
  }

  /**
   * Ends when the reads in flight have (at once when none is), or after `SETTLE_WAIT_MS`: a batch
   * waits for them before it prepares, rather than commit on the copies they replace. A read held
   * up by a failing member does not hold the batch up longer than that (the batch then commits or
   * fails its compare as it would without the read).
   */
  async settled(): Promise<void> {
    if (this.#reading.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SETTLE_WAIT_MS);
      timer.unref();
    });
    try {
      await Promise.race([Promise.all(this.#reading.values()), waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #reread(root: string): Promise<void> {
    const ranges = await this.#options.read(root);
    const read = revisionOfOne(ranges);
    const cached = this.#options.cached(root);
    // A commit of this object (or an earlier read) may have put a newer copy there meanwhile.
    if (!this.#closed && cached !== undefined && read > cached.revision) this.#options.absorb(root, ranges);
  }

  close(): void {
    this.#closed = true;
    this.#mine.clear();
  }
}
