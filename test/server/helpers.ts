/** Shared helpers of the server tests: a server over a fresh store, raw HTTP, SSE reading. */
import http from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildServer, openStore, type LockStore, type ServerOptions } from '../../src/index.js';
import { LISTEN_BACKLOG } from '../../src/server/options.js';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface TestServer {
  app: FastifyInstance;
  /** The store the server runs on (the test may call it directly). */
  store: LockStore;
  /** `http://127.0.0.1:PORT` when listening, else ''. */
  url: string;
  close(): Promise<void>;
}

/** A server over a fresh memory store (or `options.store`), listening on an ephemeral port unless `listen: false`. */
export async function testServer(options: ServerOptions & { listen?: boolean } = {}): Promise<TestServer> {
  const { listen = true, ...rest } = options;
  const store = typeof rest.store === 'object' ? rest.store : await openStore(rest.store ?? 'memory:');
  const app = await buildServer({ logLevel: 'silent', ...rest, store });
  let url = '';
  if (listen) {
    await app.listen({ host: '127.0.0.1', port: 0, backlog: LISTEN_BACKLOG });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  }
  return {
    app, store, url,
    close: async () => {
      await app.close();
      if (typeof rest.store !== 'object') await store.close();
    },
  };
}

/** A writable that keeps every line written (for log assertions). */
export class LogLines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(...chunk.toString().split('\n').filter(Boolean));
    callback();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface RawRequest {
  req: http.ClientRequest;
  /** Resolves with the status and JSON body, or rejects when the request is destroyed. */
  answer: Promise<{ status: number; headers: http.IncomingHttpHeaders; body: unknown }>;
}

/** A raw request with its own socket (no agent), so a test can destroy it mid-wait. */
export function rawRequest(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): RawRequest {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const req = http.request(`${url}${path}`, {
    method, agent: false,
    headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers },
  });
  const answer = new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: unknown }>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? null : JSON.parse(text) }));
      res.on('error', reject);
    });
  });
  answer.catch(() => {});
  req.end(payload);
  return { req, answer };
}

export interface SseEvent {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** Follows `/v1/events` and collects events; `next(pred)` resolves with the first matching one. */
export class SseReader {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  readonly #req: http.ClientRequest;
  #waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
  readonly ready: Promise<number>;

  constructor(url: string, headers: Record<string, string> = {}, query = '') {
    this.#req = http.request(`${url}/v1/events${query}`, { agent: false, headers: { accept: 'text/event-stream', ...headers } });
    this.ready = new Promise((resolve, reject) => {
      this.#req.on('error', reject);
      this.#req.on('response', (res) => {
        resolve(res.statusCode ?? 0);
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            this.#frame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        });
        res.on('error', () => {});
      });
    });
    this.ready.catch(() => {});
    this.#req.end();
  }

  #frame(frame: string): void {
    const event: SseEvent = { id: '', event: 'message', data: {} };
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
      else if (line.startsWith('id:')) event.id = line.slice(3).trim();
      else if (line.startsWith('event:')) event.event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (data === '') return;
    event.data = JSON.parse(data) as Record<string, unknown>;
    this.events.push(event);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(event)) return true;
      w.resolve(event);
      return false;
    });
  }

  next(pred: (e: SseEvent) => boolean, timeoutMs = 5000): Promise<SseEvent> {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`)), timeoutMs);
      this.#waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  close(): void {
    this.#req.destroy();
  }
}
