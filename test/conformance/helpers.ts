/** Small helpers shared by the conformance files. */
import assert from 'node:assert/strict';
import { HoldfastError, validateRequest, type ErrorCode, type LockRequest, type Locks, type LockTable, type RequestInput } from '../../src/index.js';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Runs `fn` until it returns without throwing (assertions inside it), every `intervalMs`, for up to
 * `timeoutMs`; then rethrows its last error.
 */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 5000, intervalMs = 10): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (performance.now() >= deadline) throw error;
    }
    await sleep(intervalMs);
  }
}

/** Awaits `promise`, expecting a `HoldfastError` with `code`; returns it. */
export async function rejectsWith<E extends HoldfastError = HoldfastError>(promise: Promise<unknown>, code: ErrorCode, status?: number): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof HoldfastError, `expected a HoldfastError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (status !== undefined) assert.equal(error.status, status);
    return error as E;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

/** Runs `fn`, expecting a `HoldfastError` with `code` (thrown or rejected); returns it. */
export async function throwsWith<E extends HoldfastError = HoldfastError>(fn: () => unknown, code: ErrorCode, status?: number): Promise<E> {
  return rejectsWith<E>(Promise.resolve().then(fn), code, status);
}

const PENDING = Symbol('pending');

/** True when `promise` has not settled after the current turn and a short pause. */
export async function isPending(promise: Promise<unknown>, pauseMs = 20): Promise<boolean> {
  promise.catch(() => {});
  const winner = await Promise.race([promise.then(() => 'settled', () => 'settled'), sleep(pauseMs).then(() => PENDING)]);
  return winner === PENDING;
}

/** Waits until `locks.list()` shows exactly `count` waiter rows (optionally under `prefix`). */
export async function waitForWaiters(locks: Locks, count: number, prefix?: string, timeoutMs = 5000): Promise<LockTable> {
  return eventually(async () => {
    const table = await locks.list(prefix === undefined ? {} : { prefix });
    assert.equal(table.waiters.length, count, `expected ${count} waiter rows, got ${JSON.stringify(table.waiters)}`);
    return table;
  }, timeoutMs);
}

/** A validated request for calling a store directly (ttl 30 s unless given). */
export function storeRequest(input: RequestInput): LockRequest {
  return validateRequest({ ttlMs: 30_000, ...input }).request;
}

/** Owners of the waiter rows on `key`, in queue position order. */
export function waitingOwners(table: LockTable, key: string): string[] {
  return table.waiters.filter((w) => w.key === key).sort((a, b) => a.position - b.position).map((w) => w.owner);
}

/** Owners of the held rows on `key`, sorted. */
export function holdingOwners(table: LockTable, key: string): string[] {
  return table.locks.filter((l) => l.key === key).map((l) => l.owner).sort();
}

/** True when two keys are equal or one is an ancestor of the other (independent of the code under test). */
export function keysOverlap(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

export const randomInt = (max: number): number => Math.floor(Math.random() * max);

export function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Marks a promise that a test awaits later (a waiting acquire): if the test fails first and the
 * suite closes its `Locks` objects, the promise's rejection is not reported as unhandled.
 */
export function background<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/**
 * Keeps the event loop alive until `promise` settles. Lease timers are unref'd (a held lease does
 * not keep a process alive), so a test that only awaits a lease event needs this.
 */
export async function keepAlive<T>(promise: Promise<T>): Promise<T> {
  const timer = setInterval(() => {}, 1000);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}
