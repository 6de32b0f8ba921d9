/**
 * Group commit for the postgres store: operations issued while earlier ones are in flight share
 * one call of `hf_batch` (migrations/002_group_commit.sql), so one round trip and one commit.
 *
 * No timer: an operation is sent at once when no call is in flight (a lone caller's operation
 * goes alone, as a plain call of its function). While one is, operations wait in a FIFO queue;
 * a free lane (of `lanes`) takes what was issued in the same turn of the event loop together at
 * the end of that turn (a `setImmediate`, no delay), and a call that comes back sends what queued
 * meanwhile once the event loop has run the callbacks of the answers it brought (so what those
 * callers issue next goes in the same call), up to `maxBatch` operations, in queue order. Each
 * operation keeps its own answer or error. An operation the batch deferred (it would have waited
 * for a lock while the batch held others) is put back at the front of the queue, in its order,
 * and goes first in the next call.
 *
 * A whole call that fails: when PostgreSQL reported the error, the call's transaction rolled
 * back and nothing of it happened, so the first operation gets the error (it is the only one
 * that may have waited or run long) and the others go back to the front of the queue. When no
 * connection was had, every operation gets the error. When the connection dropped, whether it
 * committed is unknown: operations that may run twice with the same effect are sent once more;
 * the others get the error, as they would alone.
 */

/** One answer of `hf_batch`: the function's answer, its error, or deferred. */
export type BatchItem = { r: unknown } | { e: { code: string; message: string; detail: string | null } } | { d: true };

export interface GroupCommitOptions {
  /** Calls in flight at once, 1 or more. */
  lanes: number;
  /** Operations per call, 1 to 64. */
  maxBatch: number;
  /** A plain call of one function (with its own retry of a dropped idempotent call). */
  single(fn: string, args: unknown[]): Promise<unknown>;
  /** One call of `hf_batch` with these operations, its items in the same order. */
  batch(ops: ReadonlyArray<{ f: string; a: unknown[] }>): Promise<BatchItem[]>;
  /** Functions that may run twice with the same effect and answer. */
  idempotent: ReadonlySet<string>;
  /** True for an error of a connection that dropped while the call was in flight. */
  isDropped(error: unknown): boolean;
  /** The error an operation of a batch gets, from the driver's (or an item's) error. */
  convert(error: unknown): unknown;
  /** How long an operation may wait in the queue (every lane busy) before it fails. */
  queueTimeoutMs: number;
  /** The error of an operation that waited `queueTimeoutMs` in the queue. */
  queueTimeout(waiting: number): Error;
}

interface Pending {
  fn: string;
  args: unknown[];
  signal: AbortSignal | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  onAbort: (() => void) | null;
  /** Fails the operation when it waited too long in the queue (armed only when it had to wait). */
  timer: NodeJS.Timeout | null;
  /** Sent once already in a call whose connection dropped. */
  resent: boolean;
}

/** An error item of a batch as the driver would have raised it (code, message, detail). */
export function batchError(item: { code: string; message: string; detail: string | null }): Error {
  return Object.assign(new Error(item.message), { code: item.code, ...(item.detail === null ? {} : { detail: item.detail }) });
}

export class GroupCommit {
  readonly #options: GroupCommitOptions;
  #queue: Pending[] = [];
  #inFlight = 0;
  #pumpScheduled = false;

  constructor(options: GroupCommitOptions) {
    this.#options = options;
  }

  submit(fn: string, args: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const pending: Pending = { fn, args, signal, resolve, reject, onAbort: null, timer: null, resent: false };
      if (signal !== undefined) {
        pending.onAbort = () => {
          if (this.#take(pending)) reject(signal.reason);
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#queue.push(pending);
      if (this.#inFlight === 0) this.#pump();
      else this.#pumpSoon();
      if (this.#queue.includes(pending)) this.#arm(pending);
    });
  }

  /**
   * While a call is in flight, a free lane takes what was issued in this turn of the event loop
   * together (a `setImmediate`, no delay), not the first operation alone.
   */
  #pumpSoon(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** A queued operation waits at most queueTimeoutMs for a lane (as a call waits for a pooled connection). */
  #arm(pending: Pending): void {
    if (pending.timer !== null) return;
    pending.timer = setTimeout(() => {
      pending.timer = null;
      if (this.#take(pending)) pending.reject(this.#options.queueTimeout(this.#queue.length));
    }, this.#options.queueTimeoutMs);
    pending.timer.unref();
  }

  /** Takes a queued operation out of the queue (false when it was sent already). */
  #take(pending: Pending): boolean {
    const at = this.#queue.indexOf(pending);
    if (at < 0) return false;
    this.#queue.splice(at, 1);
    this.#detach(pending);
    return true;
  }

  #detach(pending: Pending): void {
    if (pending.onAbort !== null) pending.signal!.removeEventListener('abort', pending.onAbort);
    pending.onAbort = null;
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.timer = null;
  }

  #pump(): void {
    while (this.#inFlight < this.#options.lanes && this.#queue.length > 0) {
      const ops: Pending[] = [];
      while (ops.length < this.#options.maxBatch && this.#queue.length > 0) {
        const pending = this.#queue.shift()!;
        this.#detach(pending);
        // Nothing of a queued operation has run yet: an abort still takes it back.
        if (pending.signal?.aborted) pending.reject(pending.signal.reason);
        else ops.push(pending);
      }
      if (ops.length === 0) continue;
      this.#inFlight += 1;
      // The lane stays taken until the callbacks of this turn of the event loop have run: the
      // callers just answered issue their next operations then, and those go together, rather
      // than the first of them alone and the rest in a later call.
      void this.#send(ops).finally(() => {
        setImmediate(() => {
          this.#inFlight -= 1;
          this.#pump();
        });
      });
    }
  }

  async #send(ops: Pending[]): Promise<void> {
    if (ops.length === 1) {
      const only = ops[0]!;
      await this.#options.single(only.fn, only.args).then(only.resolve, only.reject);
      return;
    }
    let items: BatchItem[];
    try {
      items = await this.#options.batch(ops.map((p) => ({ f: p.fn, a: p.args })));
      if (items.length !== ops.length) throw new Error(`hf_batch answered ${items.length} items for ${ops.length} operations`);
    } catch (error) {
      this.#failed(ops, error);
      return;
    }
    const deferred: Pending[] = [];
    items.forEach((item, i) => {
      const pending = ops[i]!;
      if ('d' in item) deferred.push(pending);
      else if ('e' in item) pending.reject(this.#options.convert(batchError(item.e)));
      else pending.resolve(item.r);
    });
    this.#queue.unshift(...deferred);
  }

  #failed(ops: Pending[], raw: unknown): void {
    const error = this.#options.convert(raw);
    if (!this.#options.isDropped(raw)) {
      const code = (raw as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
        // Reported by PostgreSQL: the transaction rolled back.
        ops[0]!.reject(error);
        this.#queue.unshift(...ops.slice(1));
      } else {
        // Never reached PostgreSQL (no connection): every operation would fail the same way.
        for (const pending of ops) pending.reject(error);
      }
      return;
    }
    const again: Pending[] = [];
    for (const pending of ops) {
      if (this.#options.idempotent.has(pending.fn) && !pending.resent) {
        pending.resent = true;
        again.push(pending);
      } else {
        pending.reject(error);
      }
    }
    this.#queue.unshift(...again);
  }
}
