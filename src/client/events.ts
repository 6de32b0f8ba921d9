/**
 * Follows a server's `GET /v1/events` stream and hands each event on as a `StoreChange`. It
 * reconnects after a break (with `Last-Event-ID`, so nothing in the server's buffer is missed),
 * backing off up to 5 s, and its socket does not keep the process alive.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { StoreChange } from '../stores/store.js';
import type { Transport } from './transport.js';

const CHANGE_TYPES = new Set<StoreChange['type']>(['acquired', 'released', 'expired', 'forced', 'waiting', 'timed-out', 'left']);

interface EventData {
  type?: unknown;
  keys?: unknown;
  owner?: unknown;
  fence?: unknown;
  at?: unknown;
}

/** Parses the `data:` of one event into a change; `null` for other events (`reset`). */
export function changeOf(data: string): StoreChange | null {
  let parsed: EventData;
  try {
    parsed = JSON.parse(data) as EventData;
  } catch {
    return null;
  }
  if (!CHANGE_TYPES.has(parsed.type as StoreChange['type'])) return null;
  return {
    type: parsed.type as StoreChange['type'],
    granted: [],
    keys: Array.isArray(parsed.keys) ? parsed.keys.filter((k): k is string => typeof k === 'string') : [],
    owner: typeof parsed.owner === 'string' ? parsed.owner : '',
    fence: typeof parsed.fence === 'number' ? parsed.fence : null,
    at: typeof parsed.at === 'string' ? Date.parse(parsed.at) : Date.now(),
  };
}

export class EventFollower {
  readonly #transport: Transport;
  readonly #deliver: (change: StoreChange) => void;
  #request: ClientRequest | null = null;
  #timer: NodeJS.Timeout | null = null;
  #lastId = '';
  #backoffMs = 100;
  #closed = false;

  constructor(transport: Transport, deliver: (change: StoreChange) => void) {
    this.#transport = transport;
    this.#deliver = deliver;
    this.#connect();
  }

  #connect(): void {
    if (this.#closed) return;
    const request = this.#transport.stream('v1/events', this.#lastId ? { 'last-event-id': this.#lastId } : {});
    this.#request = request;
    // Events of a request that was already given up on are ignored.
    const retry = (): void => {
      if (this.#request === request) this.#retry();
    };
    request.on('socket', (socket) => socket.unref());
    request.on('error', retry);
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        retry();
        return;
      }
      this.#backoffMs = 100;
      this.#read(response, retry);
    });
    request.end();
  }

  #read(response: IncomingMessage, retry: () => void): void {
    let buffer = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let data = '';
        for (const line of frame.split('\n')) {
          if (line.startsWith('id:')) this.#lastId = line.slice(3).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        const change = data === '' ? null : changeOf(data);
        if (change) this.#deliver(change);
      }
    });
    response.on('end', retry);
    response.on('error', retry);
  }

  #retry(): void {
    const request = this.#request;
    this.#request = null;
    request?.destroy();
    if (this.#closed || this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect();
    }, this.#backoffMs);
    this.#timer.unref();
    this.#backoffMs = Math.min(5000, this.#backoffMs * 2);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#request?.destroy();
    this.#request = null;
  }
}
