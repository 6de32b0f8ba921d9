/**
 * Follows the version records of an etcd namespace for one store object: every other process's
 * changes are published to this object's listeners (wake-ups are complete: a version record
 * carries all changes of its transaction), and the next due time they carry is handed on, so
 * this object sweeps when something another process wrote falls due, and its cache is told which
 * roots were written (refresh.ts). Changes this object wrote
 * itself (its `origin`) are skipped: the store publishes those from its own answers. After a
 * failed watch it starts again from the last revision it has seen; a compacted revision is
 * skipped (waiters' heartbeats cover what it held).
 */
import type { StoreChange } from '../store.js';
import { prefixEnd, WatchCancelledError, type EtcdClient } from './client.js';
import { decodeVersion, resolve, type Layout } from './layout.js';

const WATCH_RETRY_MS = 100;

export interface VersionWatchOptions {
  client: EtcdClient;
  layout: Layout;
  /** Written into the version records by this store object. */
  origin: string;
  /** Another process made something due at `nextDue` (its clock `clock`). */
  onDue(nextDue: number, clock: number): void;
  /** Another process wrote `root`: its version record's mod revision and the changes it carries. */
  onWritten(root: string, modRevision: number, changes: readonly StoreChange[]): void;
}

export class VersionWatch {
  readonly #options: VersionWatchOptions;
  readonly #listeners = new Set<(change: StoreChange) => void>();
  #stop: (() => void) | null = null;
  #closed = false;
  /** The revision after which the watch has delivered everything. */
  #watched = 0;

  constructor(options: VersionWatchOptions) {
    this.#options = options;
  }

  /** Starts following after `revision`. */
  start(revision: number): void {
    this.#watched = revision;
    this.#follow();
  }

  listen(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Publishes changes to the listeners; a listener's failure is its own. */
  publish(changes: readonly StoreChange[]): void {
    for (const change of changes) {
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch {
          // It never breaks the store.
        }
      }
    }
  }

  close(): void {
    this.#closed = true;
    this.#stop?.();
    this.#stop = null;
    this.#listeners.clear();
  }

  #follow(): void {
    if (this.#closed) return;
    const { client, layout, origin, onDue, onWritten } = this.#options;
    this.#stop = client.watch(
      layout.versions,
      prefixEnd(layout.versions),
      this.#watched + 1,
      (events, revision) => {
        for (const { type, kv } of events) {
          this.#watched = Math.max(this.#watched, kv.modRevision);
          if (type !== 'put') continue;
          const version = decodeVersion(kv.value);
          if (version.origin === origin) continue;
          for (const change of version.changes) if (change.fence !== null) change.fence = resolve(change.fence, kv.modRevision);
          this.publish(version.changes);
          if (version.nextDue !== null) onDue(version.nextDue, version.clock);
          onWritten(kv.key.slice(layout.versions.length), kv.modRevision, version.changes);
        }
        // A progress notice: nothing below `revision` is left to deliver.
        if (events.length === 0) this.#watched = Math.max(this.#watched, revision);
      },
      (error) => {
        this.#stop = null;
        if (this.#closed) return;
        if (error instanceof WatchCancelledError && error.compactRevision > 0) this.#watched = error.compactRevision - 1;
        setTimeout(() => this.#follow(), WATCH_RETRY_MS).unref();
      },
    );
  }
}
