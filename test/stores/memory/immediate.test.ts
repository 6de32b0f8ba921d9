/**
 * The memory store's synchronous acquire and release (`immediateCallsOf`): offered by the store
 * object itself only, never by a wrapper around it (a wrapper may intercept calls, as the
 * Shipyard example's failing store does); same answers and errors as the async calls.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openLocks, openStore, StoreUnavailableError, validateRequest, type LockStore } from '../../../src/index.js';
import { createMemoryStore } from '../../../src/stores/memory/store.js';
import { immediateCallsOf } from '../../../src/stores/store.js';

const request = (key: string) => validateRequest({ owner: 'o', resources: [key], ttlMs: 10_000 }).request;

test('only the store object itself offers immediate calls: not a Proxy of it, not a group-committing SQLite store', async () => {
  const memory = createMemoryStore();
  assert.ok(immediateCallsOf(memory));
  const proxy = new Proxy(memory, {}) as LockStore;
  assert.equal(immediateCallsOf(proxy), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-immediate-'));
  try {
    // A file: its calls of one turn share a commit, so none completes within its call.
    const sqlite = await openStore(`sqlite:${join(dir, 'locks.db')}`);
    assert.equal(immediateCallsOf(sqlite), undefined);
    await sqlite.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await memory.close();
});

test('immediate acquire and release answer as the async calls do, and publish their changes first', async () => {
  const store = createMemoryStore();
  const calls = immediateCallsOf(store)!;
  const seen: string[] = [];
  const unwatch = store.watch((change) => seen.push(change.type));
  const first = request('a/b');
  const granted = calls.acquire(first, { waitMs: 0, waiterTtlMs: 10_000 });
  assert.equal(granted.status, 'granted');
  assert.deepEqual(seen, ['acquired']);
  const busy = calls.acquire(request('a'), { waitMs: 0, waiterTtlMs: 10_000 });
  assert.equal(busy.status, 'busy');
  assert.equal(busy.status === 'busy' && busy.holders[0]!.key, 'a/b');
  // A used id is refused with the same error as the async call's.
  assert.throws(() => calls.acquire(first, { waitMs: 0, waiterTtlMs: 10_000 }), { code: 'INVALID_REQUEST' });
  await assert.rejects(store.acquire(first, { waitMs: 0, waiterTtlMs: 10_000 }), { code: 'INVALID_REQUEST' });
  assert.equal(calls.release(first.id), true);
  assert.equal(calls.release(first.id), false);
  assert.deepEqual(seen, ['acquired', 'released']);
  unwatch();
  await store.close();
  assert.throws(() => calls.acquire(request('c'), { waitMs: 0, waiterTtlMs: 10_000 }), StoreUnavailableError);
});

test('Locks over a wrapper of the memory store goes through the wrapper', async () => {
  const store = createMemoryStore();
  let released = 0;
  const wrapper = new Proxy(store, {
    get(target, name) {
      if (name === 'release') return async (...args: Parameters<LockStore['release']>) => (released++, target.release(...args));
      const value: unknown = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const locks = await openLocks(wrapper, { owner: 'o' });
  const lease = await locks.acquire('k');
  assert.equal(await lease.release(), true);
  assert.equal(released, 1);
  await locks.close();
});
