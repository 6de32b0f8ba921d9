/**
 * The one change-log watcher of a `mysql://` store object. MySQL has no LISTEN, so while this
 * process has queued tickets the watcher reads the rows other processes added to `hf_changes`
 * (one per grant of a queued ticket) every `intervalMs` — one indexed range read per interval per
 * process, however many tickets wait — and stops when none is queued.
 *
 * AUTO_INCREMENT ids are handed out at insert and become visible at commit, so a row can appear
 * after a higher one: ids skipped over are remembered as holes and read again for a few seconds.
 */
import type { Pool, RowDataPacket } from 'mysql2/promise';
import type { StoreChange } from '../store.js';
import { text } from './convert.js';
import * as sql from './sql.js';

/** How long a skipped id is looked for (a transaction that took it may still commit). */
const HOLE_MS = 5000;
/** Holes remembered at most. */
const MAX_HOLES = 1000;
const PAGE = 500;

export interface WatcherOptions {
  pool: Pool;
  origin: string;
  intervalMs: number;
  /** A grant made by another process. */
  onGrant(change: StoreChange): void;
}

export class Watcher {
  readonly #options: WatcherOptions;
  #cursor: number | null = null;
  readonly #holes = new Map<number, number>();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #wanted = false;
  #closed = false;

  constructor(options: WatcherOptions) {
    this.#options = options;
  }

  /**
   * Reads from after `fromId` (the newest id when a ticket was queued: its grant comes later).
   * A running watcher goes on from where it is: what it skipped is remembered as holes.
   */
  start(fromId: number): void {
    if (this.#closed) return;
    this.#cursor ??= fromId;
    this.#wanted = true;
    if (this.#timer === null && this.#running === null) this.#schedule(0);
  }

  /** Stops after the current read (no queued tickets left). */
  stop(): void {
    this.#wanted = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#cursor = null;
    this.#holes.clear();
  }

  #schedule(delay: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#read().finally(() => {
        this.#running = null;
        if (this.#wanted && !this.#closed && this.#timer === null) this.#schedule(this.#options.intervalMs);
      });
    }, delay);
    this.#timer.unref();
  }

  async #read(): Promise<void> {
    const cursor = this.#cursor;
    if (cursor === null) return;
    const now = performance.now();
    for (const [id, since] of this.#holes) if (now - since > HOLE_MS) this.#holes.delete(id);
    let found: RowDataPacket[];
    try {
      [found] = await this.#options.pool.query<RowDataPacket[]>(sql.CHANGES_AFTER, [cursor, this.#holes.size > 0 ? [...this.#holes.keys()] : [0], PAGE]);
    } catch {
      return; // the next read tries again; waiters also heartbeat-poll meanwhile
    }
    if (this.#cursor === null) return;
    let last = this.#cursor;
    for (const row of found) {
      const id = Number(row['id']);
      this.#holes.delete(id);
      if (id > last) {
        for (let skipped = last + 1; skipped < id && this.#holes.size < MAX_HOLES; skipped++) this.#holes.set(skipped, now);
        last = id;
      }
      if (text(row['origin']) === this.#options.origin) continue;
      this.#options.onGrant({
        type: 'acquired',
        granted: [text(row['ticket'])],
        keys: JSON.parse(text(row['keys_json'])) as string[],
        owner: text(row['owner']),
        fence: Number(row['fence']),
        at: Number(row['at']),
        expiresAt: Number(row['expires_at']),
      });
    }
    this.#cursor = Math.max(this.#cursor, last);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.stop();
    await this.#running;
  }
}
