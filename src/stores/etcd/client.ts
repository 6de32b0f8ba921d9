/**
 * A small client of etcd's v3 API through the JSON gateway that every etcd member serves on its
 * client port (`POST /v3/kv/txn`, `/v3/kv/range`, `/v3/lease/grant`, `/v3/watch`, ...), over
 * `node:http` with keep-alive. No dependency and no hidden behaviour: every call is one HTTP
 * request to one member, with a timeout and the caller's `signal`; a call that fails says
 * whether it may have been applied (`EtcdCallError.maybeApplied`), and the store decides what to
 * do about it. Members are tried in turn: a member that refuses, times out or answers
 * "unavailable" (no leader, leader changed) is left for the next one.
 *
 * Inputs and outputs follow etcd's protobuf JSON mapping: keys and values are base64, 64-bit
 * integers are decimal strings, default values are left out.
 */
import { Agent, request, type IncomingMessage } from 'node:http';

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** The etcd lease the key is on ('0': none), as decimal text (ids are 64-bit). */
  lease: string;
}

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { deleteRange: { key: string; rangeEnd?: string | Buffer } }
  | { range: { key: string; rangeEnd?: string | Buffer } };

export interface Compare {
  key: string;
  /** `mod`: the key's mod revision (0 when it does not exist). */
  target: 'mod' | 'create' | 'version';
  equals: number;
}

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** The key-values of each `range` op, in op order (one array per range op). */
  ranges: KeyValue[][];
}

/** A call that did not get an answer. `maybeApplied`: the request was sent and may have taken effect. */
export class EtcdCallError extends Error {
  constructor(message: string, readonly maybeApplied: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EtcdCallError';
  }
}

/** A watch the member cancelled; `compactRevision` > 0 when the start revision was compacted away. */
export class WatchCancelledError extends Error {
  constructor(readonly compactRevision: number, message: string) {
    super(message);
    this.name = 'WatchCancelledError';
  }
}

export interface EtcdClientOptions {
  /** `host:port` of each member. */
  endpoints: string[];
  /** Give up on one member's answer after this long, ms. */
  requestTimeoutMs: number;
}

interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

interface RawTxnResponse {
  header?: { revision?: string };
  succeeded?: boolean;
  responses?: Array<{ response_range?: { kvs?: RawKv[] } }>;
}

export const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (text: string | undefined): string => (text === undefined ? '' : Buffer.from(text, 'base64').toString('utf8'));

/** The first key after every key that starts with `prefix` (etcd's range end for a prefix), as bytes. */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

function toKv(raw: RawKv): KeyValue {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    createRevision: Number(raw.create_revision ?? 0),
    modRevision: Number(raw.mod_revision ?? 0),
    lease: raw.lease ?? '0',
  };
}

/** Keys as text are UTF-8; a range end from `prefixEnd` is raw bytes. */
const keyBytes = (key: string | Buffer): string => (typeof key === 'string' ? b64(key) : key.toString('base64'));
const endBytes = keyBytes;

function opJson(op: TxnOp): unknown {
  if ('put' in op) return { request_put: { key: keyBytes(op.put.key), value: b64(op.put.value), ...(op.put.lease ? { lease: op.put.lease } : {}) } };
  if ('deleteRange' in op) {
    return { request_delete_range: { key: keyBytes(op.deleteRange.key), ...(op.deleteRange.rangeEnd !== undefined ? { range_end: endBytes(op.deleteRange.rangeEnd) } : {}) } };
  }
  return { request_range: { key: keyBytes(op.range.key), ...(op.range.rangeEnd !== undefined ? { range_end: endBytes(op.range.rangeEnd) } : {}) } };
}

const TARGETS = { mod: ['MOD', 'mod_revision'], create: ['CREATE', 'create_revision'], version: ['VERSION', 'version'] } as const;

export class EtcdClient {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 64 });
  /** The member used now; moves on when it fails. */
  #current = 0;
  #closed = false;

  constructor(options: EtcdClientOptions) {
    this.#endpoints = options.endpoints;
    this.#timeoutMs = options.requestTimeoutMs;
  }

  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** The member calls go to now (`host:port`). */
  get current(): string {
    return this.#endpoints[this.#current % this.#endpoints.length]!;
  }

  /** Leaves the current member for the next one. */
  next(failed: string): void {
    if (this.current === failed) this.#current = (this.#current + 1) % this.#endpoints.length;
  }

  async txn(compares: Compare[], success: TxnOp[], failure: TxnOp[], signal?: AbortSignal): Promise<TxnResult> {
    const body = {
      compare: compares.map((c) => {
        const [target, field] = TARGETS[c.target];
        return { key: keyBytes(c.key), target, result: 'EQUAL', [field]: String(c.equals) };
      }),
      success: success.map(opJson),
      failure: failure.map(opJson),
    };
    const raw = (await this.call('/v3/kv/txn', body, signal)) as RawTxnResponse;
    const ranges = (raw.responses ?? []).filter((r) => r.response_range !== undefined).map((r) => (r.response_range!.kvs ?? []).map(toKv));
    return { succeeded: raw.succeeded === true, revision: Number(raw.header?.revision ?? 0), ranges };
  }

  /** A linearizable range read: newest first when `descending`, at most `limit` (0: all). */
  async range(key: string, rangeEnd: string | Buffer, options: { limit?: number; descending?: boolean; signal?: AbortSignal | undefined } = {}): Promise<KeyValue[]> {
    const body = {
      key: keyBytes(key),
      range_end: endBytes(rangeEnd),
      ...(options.limit ? { limit: String(options.limit) } : {}),
      ...(options.descending ? { sort_order: 'DESCEND', sort_target: 'KEY' } : {}),
    };
    const raw = (await this.call('/v3/kv/range', body, options.signal)) as { kvs?: RawKv[] };
    return (raw.kvs ?? []).map(toKv);
  }

  /** A linearizable range read sorted by create revision, newest first (0: no bound on it). */
  async rangeByCreate(key: string, rangeEnd: string | Buffer, maxCreateRevision: number, signal?: AbortSignal): Promise<KeyValue[]> {
    const body = {
      key: keyBytes(key),
      range_end: endBytes(rangeEnd),
      sort_order: 'DESCEND',
      sort_target: 'CREATE',
      ...(maxCreateRevision > 0 ? { max_create_revision: String(maxCreateRevision) } : {}),
    };
    const raw = (await this.call('/v3/kv/range', body, signal)) as { kvs?: RawKv[] };
    return (raw.kvs ?? []).map(toKv);
  }

  /** How many keys the range holds, and the `limit`-th key from its start ('' when fewer). */
  async countAndNth(key: string, rangeEnd: string | Buffer, limit: number, signal?: AbortSignal): Promise<{ count: number; nth: string }> {
    const raw = (await this.call('/v3/kv/range', { key: keyBytes(key), range_end: endBytes(rangeEnd), keys_only: true, limit: String(limit) }, signal)) as { kvs?: RawKv[]; count?: string };
    const kvs = raw.kvs ?? [];
    return { count: Number(raw.count ?? 0), nth: kvs.length === limit ? unb64(kvs[kvs.length - 1]!.key) : '' };
  }

  async deletePrefix(prefix: string, signal?: AbortSignal): Promise<void> {
    await this.call('/v3/kv/deleterange', { key: keyBytes(prefix), range_end: endBytes(prefixEnd(prefix)) }, signal);
  }

  /** Grants an etcd lease of `ttlSeconds` and returns its id (a 64-bit integer, as decimal text). */
  async grantLease(ttlSeconds: number, signal?: AbortSignal): Promise<string> {
    const raw = (await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) }, signal)) as { ID?: string };
    if (raw.ID === undefined) throw new EtcdCallError('etcd granted a lease without an id', false);
    return raw.ID;
  }

  /**
   * One JSON call to the current member. A member that fails is left for the next one, and the
   * call is tried there only when it certainly did not reach the first (connection refused); any
   * other failure is thrown as `EtcdCallError`, `maybeApplied` set when it was sent.
   */
  async call(path: string, body: unknown, signal?: AbortSignal, endpoint = this.current): Promise<unknown> {
    if (this.#closed) throw new EtcdCallError('the etcd client is closed', false);
    signal?.throwIfAborted();
    const payload = JSON.stringify(body);
    let attempts = 0;
    for (;;) {
      try {
        return await this.#post(endpoint, path, payload, signal);
      } catch (error) {
        if (!(error instanceof EtcdCallError)) throw error;
        this.next(endpoint);
        attempts++;
        if (error.maybeApplied || attempts >= this.#endpoints.length) throw error;
        endpoint = this.current;
      }
    }
  }

  #post(endpoint: string, path: string, payload: string, signal: AbortSignal | undefined): Promise<unknown> {
    const [host, port] = splitHostPort(endpoint);
    return new Promise((resolve, reject) => {
      let sent = false;
      let settled = false;
      const finish = (error: Error | null, value?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve(value);
      };
      const req = request({ host, port, path, method: 'POST', agent: this.#agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } });
      const onAbort = (): void => {
        req.destroy();
        finish(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => {
        req.destroy();
        finish(new EtcdCallError(`etcd member ${endpoint} did not answer ${path} within ${this.#timeoutMs} ms`, true));
      }, this.#timeoutMs);
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('socket', (socket) => {
        // A reused socket is connected already; a new one is once it connects.
        if (!socket.connecting) sent = true;
        else socket.once('connect', () => (sent = true));
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        const refused = error.code === 'ECONNREFUSED' || error.code === 'EHOSTUNREACH' || (!sent && error.code !== 'ECONNRESET');
        finish(new EtcdCallError(`etcd member ${endpoint}: ${error.message}`, !refused, { cause: error }));
      });
      req.on('response', (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => finish(new EtcdCallError(`etcd member ${endpoint}: ${error.message}`, true, { cause: error })));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: { error?: string; message?: string; code?: number } & Record<string, unknown>;
          try {
            parsed = JSON.parse(text) as typeof parsed;
          } catch {
            finish(new EtcdCallError(`etcd member ${endpoint} answered ${path} with ${response.statusCode}: ${text.slice(0, 200)}`, true));
            return;
          }
          if ((response.statusCode ?? 500) >= 300 || parsed.error !== undefined) {
            const message = parsed.message ?? parsed.error ?? `status ${response.statusCode}`;
            // gRPC codes: 14 unavailable (no leader, leader changed, stopped) and 4 deadline
            // exceeded may have been applied; anything else is a refusal of the request.
            const code = parsed.code ?? 0;
            finish(new EtcdCallError(`etcd member ${endpoint}: ${message}`, code === 14 || code === 4 || code === 0));
            return;
          }
          finish(null, parsed);
        });
      });
      req.end(payload);
    });
  }

  /**
   * Opens a watch stream on one member over `key` (to `rangeEnd`, when given): `onEvents` gets each event's key-values (puts; a delete
   * has an empty value), `onEnd` is called once when the stream ends for any reason. The stream
   * asks the member to end it when it loses its leader (so a cut-off member is left).
   */
  watch(
    key: string,
    rangeEnd: string | Buffer | undefined,
    startRevision: number,
    onEvents: (events: Array<{ type: 'put' | 'delete'; kv: KeyValue }>, revision: number) => void,
    onEnd: (error: Error) => void,
  ): () => void {
    const endpoint = this.current;
    const [host, port] = splitHostPort(endpoint);
    const payload = JSON.stringify({
      create_request: { key: keyBytes(key), ...(rangeEnd !== undefined ? { range_end: endBytes(rangeEnd) } : {}), start_revision: String(startRevision), progress_notify: true },
    });
    let ended = false;
    const end = (error: Error): void => {
      if (ended) return;
      ended = true;
      req.destroy();
      onEnd(error);
    };
    const req = request({
      host, port, path: '/v3/watch', method: 'POST',
      headers: { 'content-type': 'application/json', 'grpc-metadata-hasleader': 'true' },
    });
    req.on('error', (error) => {
      this.next(endpoint);
      end(error);
    });
    req.on('response', (response) => {
      response.setEncoding('utf8');
      let buffer = '';
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line.length === 0) continue;
          let message: { result?: { header?: { revision?: string }; canceled?: boolean; compact_revision?: string; cancel_reason?: string; events?: Array<{ type?: string; kv?: RawKv }> }; error?: unknown };
          try {
            message = JSON.parse(line) as typeof message;
          } catch {
            end(new Error(`etcd watch on ${endpoint} sent unparsable data`));
            return;
          }
          const result = message.result;
          if (message.error !== undefined || result === undefined) {
            this.next(endpoint);
            end(new Error(`etcd watch on ${endpoint} failed: ${JSON.stringify(message.error)}`));
            return;
          }
          if (result.canceled) {
            end(new WatchCancelledError(Number(result.compact_revision ?? 0), `etcd watch on ${endpoint} was cancelled: ${result.cancel_reason ?? ''}`));
            return;
          }
          const events = (result.events ?? []).map((e) => ({ type: e.type === 'DELETE' ? ('delete' as const) : ('put' as const), kv: toKv(e.kv ?? {}) }));
          onEvents(events, Number(result.header?.revision ?? 0));
        }
      });
      response.on('end', () => end(new Error(`etcd watch on ${endpoint} ended`)));
      response.on('error', (error) => end(error));
    });
    req.end(payload);
    req.on('socket', (socket) => socket.unref());
    return () => end(new Error('closed'));
  }

  close(): void {
    this.#closed = true;
    this.#agent.destroy();
  }
}

function splitHostPort(endpoint: string): [string, number] {
  const index = endpoint.lastIndexOf(':');
  return [endpoint.slice(0, index).replace(/^\[|\]$/g, ''), Number(endpoint.slice(index + 1))];
}
