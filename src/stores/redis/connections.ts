/**
 * The Redis store's connections for operations: `count` node-redis clients, all named
 * `holdfast:<prefix>` (CLIENT SETNAME), none with an offline queue (a command sent while one is
 * down fails at once, and is never resent by the client library). A command goes on the
 * ready connection with the fewest commands in flight, so with two Redis runs the calls of one while
 * this process handles the answers of the other; on one connection those two alternate. Each
 * socket keeps the process alive only while it has commands in flight.
 */
import { createClient, type RedisClientType } from '@redis/client';

export interface ConnectionsOptions {
  /** The server's URL (without holdfast's `prefix` parameter). */
  url: string;
  /** How many connections, 1 or more. */
  count: number;
  /** CLIENT SETNAME of each. */
  name: string;
  /** How long connecting may take (node-redis `connectTimeout`). */
  connectTimeoutMs: number;
  /** The longest delay between two reconnect attempts (they start at 50 ms and double). */
  reconnectMaxMs: number;
}

/** One connection and its commands in flight. */
export interface Connection {
  readonly client: RedisClientType;
  inFlight: number;
}

export class Connections {
  readonly #all: Connection[];

  constructor(options: ConnectionsOptions) {
    this.#all = Array.from({ length: options.count }, () => {
      const client = createClient({
        url: options.url,
        name: options.name,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: options.connectTimeoutMs,
          reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 16), options.reconnectMaxMs),
        },
      }) as RedisClientType;
      // Errors reach the callers of the operations; an idle connection that breaks reconnects.
      client.on('error', () => {});
      return { client, inFlight: 0 };
    });
  }

  /** The first connection: the one a duplicate (the inbox reader) is made from. */
  get first(): RedisClientType {
    return this.#all[0]!.client;
  }

  /** Connects every connection (at once); each is unref'd once connected. */
  async connect(): Promise<void> {
    await Promise.all(this.#all.map(async ({ client }) => {
      await client.connect();
      client.unref();
    }));
  }

  /**
   * The connection with the fewest commands in flight (the first of those on a tie), among those
   * that are up: one that dropped and is reconnecting is passed over while another is ready (a
   * command on it would fail at once). When none is ready, the first (its command fails as it
   * would alone).
   */
  pick(): Connection {
    let best: Connection | null = null;
    for (const c of this.#all) if (c.client.isReady && (best === null || c.inFlight < best.inFlight)) best = c;
    return best ?? this.#all[0]!;
  }

  /** One command on `on` (by default the least busy connection). */
  async send(args: string[], on: Connection = this.pick()): Promise<unknown> {
    if (on.inFlight++ === 0) on.client.ref();
    try {
      return await on.client.sendCommand(args);
    } finally {
      if (--on.inFlight === 0) on.client.unref();
    }
  }

  /** Closes every connection after the replies of what was sent (destroys one that will not close). */
  async close(): Promise<void> {
    await Promise.all(this.#all.map(async ({ client }) => {
      client.ref();
      await client.close().catch(() => client.destroy());
    }));
  }

  /** Drops every connection at once. */
  destroy(): void {
    for (const { client } of this.#all) {
      try {
        client.destroy();
      } catch {
        // Never connected.
      }
    }
  }
}
