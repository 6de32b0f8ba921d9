/**
 * The one dedicated LISTEN connection of a postgres store. It receives the grants other
 * processes made (`hf_notify_grant`), reconnects with exponential backoff when the connection
 * drops, and after a reconnect asks the store for the grants it may have missed meanwhile.
 * Only this connection has session state (the LISTEN); operations never depend on it.
 */
import pg from 'pg';

export interface ListenerOptions {
  config: pg.ClientConfig;
  channel: string;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** A notification's payload. */
  onPayload(payload: string): void;
  /** Called after every (re)connect but the first, to catch up on what was missed while down. */
  onReconnect(): void;
  /** Called when an established LISTEN connection is lost. */
  onDrop(): void;
}

export class Listener {
  readonly #options: ListenerOptions;
  #client: pg.Client | null = null;
  #connected = false;
  #everConnected = false;
  #closed = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | null = null;
  #pid: number | null = null;
  #upWaiters: Array<() => void> = [];

  constructor(options: ListenerOptions) {
    this.#options = options;
  }

  /** True while the LISTEN is in place. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The server process id of the LISTEN connection (null while down). */
  get pid(): number | null {
    return this.#pid;
  }

  start(): void {
    void this.#connect();
  }

  /** Resolves once the LISTEN is in place (or the listener is closed). */
  whenConnected(): Promise<void> {
    if (this.#connected || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#upWaiters.push(resolve));
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ ...this.#options.config, keepAlive: true });
    this.#client = client;
    client.on('notification', (message) => {
      if (message.payload !== undefined) this.#options.onPayload(message.payload);
    });
    client.on('error', () => this.#dropped(client));
    client.on('end', () => this.#dropped(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#options.channel)}`);
      const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
      this.#pid = Number(rows[0]?.pid);
    } catch {
      this.#dropped(client);
      return;
    }
    if (this.#client !== client || this.#closed) {
      void client.end().catch(() => {});
      return;
    }
    // An idle LISTEN connection must not keep the process alive on its own.
    streamOf(client)?.unref?.();
    this.#connected = true;
    this.#attempt = 0;
    const reconnect = this.#everConnected;
    this.#everConnected = true;
    for (const resolve of this.#upWaiters.splice(0)) resolve();
    if (reconnect) this.#options.onReconnect();
  }

  #dropped(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    if (this.#connected) this.#options.onDrop();
    this.#connected = false;
    this.#pid = null;
    streamOf(client)?.ref?.();
    void client.end().catch(() => {});
    if (this.#closed || this.#timer !== null) return;
    const base = Math.min(this.#options.reconnectMaxMs, this.#options.reconnectMinMs * 2 ** Math.min(this.#attempt, 20));
    this.#attempt += 1;
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#connect();
    }, delay);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const resolve of this.#upWaiters.splice(0)) resolve();
    const client = this.#client;
    this.#client = null;
    this.#connected = false;
    if (client) {
      // Closing is pending I/O again: keep the process alive until the connection has ended.
      streamOf(client)?.ref?.();
      await client.end().catch(() => {});
    }
  }
}

function streamOf(client: pg.Client): { ref?: () => void; unref?: () => void } | undefined {
  return (client as unknown as { connection?: { stream?: { ref?: () => void; unref?: () => void } } }).connection?.stream;
}
