/**
 * Push wake-ups across processes for the `sqlite:` store. A waiter of this process may be granted
 * by another process sharing the file (its release hands the key on inside its transaction); that
 * process cannot reach this one, but its grant is a history event, and SQLite says when another
 * connection has committed (`PRAGMA data_version`, a read of shared memory, about 5 µs).
 *
 * So while this store object has tickets queued, it checks the data version whenever the file's
 * write-ahead log changes (`fs.watch`: inotify on Linux, so a commit by another process wakes it at
 * once, and an idle wait costs nothing) and every `WATCHED_INTERVAL_MS` as a safety net, or every
 * `UNWATCHED_INTERVAL_MS` where the log can't be watched. A commit writes the log before it syncs
 * it and makes it visible, so after a change of the log the version is checked at once, then
 * every millisecond for `FAST_AFTER_WRITE_MS`, then after pauses twice as long each time, up to
 * `AFTER_WRITE_MS`, until it moves (this process's own commits change the log too, but never the
 * version: each costs some fifteen checks). When the version moved, it reads the
 * history events other processes wrote since the last one it read (`origin` is not this
 * process's) and delivers them as store changes: a grant of one of its tickets wakes that waiter,
 * with the lease's expiry when the lease is still there, so the waiter needs no poll. With no
 * ticket queued it does nothing at all.
 *
 * Reading starts from the newest event id taken before the acquire that queued the first ticket,
 * so a grant committed between that acquire and the first check is not missed. Timers and the
 * watcher never keep the process alive; a failed read is retried at the next check, never thrown.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { StoreChange } from '../store.js';
import type { OtherEvent } from './state.js';

/** How often the data version is checked while tickets are queued and the log is watched (a safety net). */
const WATCHED_INTERVAL_MS = 50;
/** How often it is checked while tickets are queued and the log can't be watched. */
const UNWATCHED_INTERVAL_MS = 5;
/** After the log changed, how long the version is checked every millisecond, waiting for the commit to show... */
const FAST_AFTER_WRITE_MS = 10;
/** ...and the longest pause between the checks after that (2, 4, 8, ... ms). */
const AFTER_WRITE_MS = 50;
/** Events read per query; a longer backlog is read in several. */
const PAGE = 500;

/** What the follower reads, each call one statement on the store's connection. */
export interface OtherProcessSource {
  dataVersion(): number;
  lastHistoryId(): number;
  historyOfOthers(after: number, limit: number): OtherEvent[];
}

export interface OtherProcessOptions {
  /** The file every commit writes (the database's `-wal`), watched for changes; null: not watched. */
  watchFile: string | null;
}

/** Where to start reading: taken before an acquire that may queue. */
export interface FollowMark {
  after: number;
  version: number;
}

export class OtherProcessChanges {
  readonly #source: OtherProcessSource;
  readonly #deliver: (change: StoreChange) => void;
  readonly #watchFile: string | null;
  #watcher: FSWatcher | null = null;
  /** The next check after a change of the log, when (performance.now()) the log changed last, and the pause after it. */
  #soon: NodeJS.Timeout | null = null;
  #changedAt = 0;
  #soonDelay = 1;
  /** Queued tickets of this store object: how long each is kept without news, and until when (performance.now()). */
  readonly #tickets = new Map<string, { keepMs: number; until: number }>();
  #timer: NodeJS.Timeout | null = null;
  #after = 0;
  #version = 0;

  constructor(source: OtherProcessSource, deliver: (change: StoreChange) => void, options: OtherProcessOptions) {
    this.#source = source;
    this.#deliver = deliver;
    this.#watchFile = options.watchFile;
  }

  /**
   * Where reading must start if the acquire about to be sent queues: null when following already
   * (reading goes on from where it is) or when the file can't be read now.
   */
  mark(): FollowMark | null {
    if (this.#timer !== null) return null;
    return this.#markNow();
  }

  #markNow(): FollowMark | null {
    try {
      return { version: this.#source.dataVersion(), after: this.#source.lastHistoryId() };
    } catch {
      return null;
    }
  }

  /**
   * A ticket queued: followed until it is granted, gone or cancelled, or for `waiterTtlMs` twice
   * over without news of it (`touch`): its waiter went away without a word.
   */
  queued(ticket: string, waiterTtlMs: number, mark: FollowMark | null): void {
    const keepMs = 2 * waiterTtlMs + 1000;
    this.#tickets.set(ticket, { keepMs, until: performance.now() + keepMs });
    if (this.#timer !== null) return;
    // Without a mark from before the acquire, a grant made since is found by the waiter's next
    // heartbeat poll; if the file can't be read at all, the heartbeats are all there is.
    const start = mark ?? this.#markNow();
    if (start === null) return;
    this.#after = start.after;
    this.#version = start.version;
    this.#watcher = this.#watch();
    this.#every(this.#watcher === null ? UNWATCHED_INTERVAL_MS : WATCHED_INTERVAL_MS);
    // Something may already have happened since the mark.
    this.#check();
  }

  /** Watches the log (a change starts the checks of `#afterWrite`), or null when it can't be watched. */
  #watch(): FSWatcher | null {
    if (this.#watchFile === null) return null;
    try {
      const watcher = watch(this.#watchFile, { persistent: false }, () => {
        this.#changedAt = performance.now();
        this.#soonDelay = 1;
        this.#soon ??= setTimeout(this.#afterWrite, 0).unref();
      });
      watcher.on('error', () => {
        // The log went away or can't be watched any more: check on the short interval instead.
        watcher.close();
        if (this.#watcher !== watcher) return;
        this.#watcher = null;
        if (this.#timer !== null) this.#every(UNWATCHED_INTERVAL_MS);
      });
      return watcher;
    } catch {
      return null;
    }
  }

  /** A check after the log changed; again while the version hasn't moved (see the top of the file). */
  readonly #afterWrite = (): void => {
    this.#soon = null;
    if (this.#check() || this.#timer === null || this.#soonDelay > AFTER_WRITE_MS) return;
    this.#soon = setTimeout(this.#afterWrite, this.#soonDelay).unref();
    if (performance.now() - this.#changedAt >= FAST_AFTER_WRITE_MS) this.#soonDelay *= 2;
  };

  #every(ms: number): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#check(), ms);
    this.#timer.unref();
  }

  /** News of a followed ticket: it is still queued (a poll said so). */
  touch(ticket: string): void {
    const entry = this.#tickets.get(ticket);
    if (entry !== undefined) entry.until = performance.now() + entry.keepMs;
  }

  /** The ticket needs no following any more (granted, gone or cancelled). */
  forget(ticket: string): void {
    this.#tickets.delete(ticket);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#soon !== null) clearTimeout(this.#soon);
    this.#soon = null;
    this.#tickets.clear();
  }

  /** Reads what other processes did if the data version moved; true when it did (or following stopped). */
  #check(): boolean {
    const now = performance.now();
    for (const [ticket, { until }] of this.#tickets) if (until < now) this.#tickets.delete(ticket);
    if (this.#tickets.size === 0) {
      this.stop();
      return true;
    }
    try {
      const version = this.#source.dataVersion();
      if (version === this.#version) return false;
      for (;;) {
        const events = this.#source.historyOfOthers(this.#after, PAGE);
        for (const event of events) {
          this.#after = event.id;
          this.#deliver(toChange(event));
        }
        if (events.length < PAGE) break;
      }
      // Only once everything up to this version was read: a failed read is tried again.
      this.#version = version;
      return true;
    } catch {
      // The file is busy or closing: the next check tries again.
      return false;
    }
  }
}

function toChange(event: OtherEvent): StoreChange {
  const change: StoreChange = {
    type: event.type, owner: event.owner, keys: event.keys, fence: event.fence, at: event.at,
    granted: event.type === 'acquired' ? [event.leaseId] : [],
  };
  if (event.expiresAt !== null) change.expiresAt = event.expiresAt;
  return change;
}
