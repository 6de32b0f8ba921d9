/**
 * A store object's inbox: the Redis stream `<base>in:<origin>` to which the library appends every
 * grant of a ticket this object queued, whoever made it. One connection per store object reads
 * it with a blocking `XREAD` from the last id it saw, so a dropped connection, a `CLIENT KILL` or
 * a restart of Redis loses no wake-up: the next read resumes where the last one ended.
 */
import type { RedisClientType } from '@redis/client';
import type { StoreChange } from '../store.js';
import { toChange } from './convert.js';

/** How long one XREAD blocks before it is sent again (bounds how long a dead socket goes unnoticed). */
const BLOCK_MS = 5000;
const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 1000;

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

export class Inbox {
  readonly #client: RedisClientType;
  readonly #key: string;
  readonly #onChange: (change: StoreChange) => void;
  #closed = false;
  #running: Promise<void> | null = null;
  #last = '0-0';
  #reading = false;

  constructor(client: RedisClientType, key: string, onChange: (change: StoreChange) => void) {
    this.#client = client;
    this.#key = key;
    this.#onChange = onChange;
  }

  /** True while an XREAD is outstanding on a connected socket. */
  get reading(): boolean {
    return this.#reading && this.#client.isReady;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  async #loop(): Promise<void> {
    let retry = RETRY_MIN_MS;
    try {
      await this.#client.connect();
    } catch {
      // The loop below retries; the client reconnects by itself.
    }
    this.#client.unref();
    while (!this.#closed) {
      try {
        this.#reading = true;
        const reply = (await this.#client.sendCommand(['XREAD', 'BLOCK', String(BLOCK_MS), 'STREAMS', this.#key, this.#last])) as StreamReply;
        this.#reading = false;
        retry = RETRY_MIN_MS;
        for (const [, entries] of reply ?? []) {
          for (const [id, fields] of entries) {
            this.#last = id;
            for (let i = 0; i + 1 < fields.length; i += 2) {
              if (fields[i] !== 'c') continue;
              let change: StoreChange | null = null;
              try {
                change = toChange(JSON.parse(fields[i + 1]!));
              } catch {
                change = null;
              }
              if (change !== null) this.#onChange(change);
            }
          }
        }
      } catch {
        this.#reading = false;
        if (this.#closed) break;
        await new Promise((resolve) => setTimeout(resolve, retry).unref());
        retry = Math.min(RETRY_MAX_MS, retry * 2);
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#client.destroy();
    await this.#running?.catch(() => {});
  }
}
