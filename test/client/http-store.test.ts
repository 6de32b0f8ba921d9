/**
 * The http store: `openLocks('http://...')` gives the library API over a holdfast server. Waits
 * happen on the server (looping past its maximum), the lease deadline is anchored at the grant
 * not at the call, aborts leave nothing behind, 410/404 map to lost/unknown, network failures to
 * STORE_UNAVAILABLE, and `events: true` follows the server's event stream.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import {
  HoldfastError, LeaseLostError, openLocks, openStore, StoreUnavailableError, WaitTimeoutError, type Locks, type StoreChange,
} from '../../src/index.js';
import { sleep, testServer, type TestServer } from '../server/helpers.js';

const isCode = (code: string) => (e: unknown): boolean => e instanceof HoldfastError && e.code === code;

describe('http store', () => {
  let server: TestServer;
  const opened: Locks[] = [];
  const open = async (owner: string, storeOptions: Record<string, unknown> = {}): Promise<Locks> => {
    const locks = await openLocks(server.url, { owner, storeOptions });
    opened.push(locks);
    return locks;
  };
  before(async () => {
    server = await testServer({ maxWaitMs: 300 });
  });
  after(async () => {
    await Promise.allSettled(opened.map((l) => l.close()));
    await server.close();
  });

  test('acquire, renew, release and list through the server', async () => {
    const a = await open('a');
    assert.equal(a.store.info.kind, 'http');
    assert.equal(a.store.info.wakeups, 'complete');
    const lease = await a.acquire('c/basic', { ttlMs: 5000, metadata: { message: 'hi' } });
    assert.equal(lease.owner, 'a');
    assert.deepEqual((await server.store.list({ prefix: 'c/basic' })).locks.map((l) => l.owner), ['a']);
    await lease.renew({ ttlMs: 8000 });
    assert.equal(lease.ttlMs, 8000);
    assert.deepEqual((await a.list({ prefix: 'c/' })).locks.map((l) => `${l.key}:${l.owner}`), ['c/basic:a']);
    assert.equal(await lease.release(), true);
    assert.equal(await a.release(lease.id), false);
    await assert.rejects(a.renew(lease.id), isCode('LEASE_LOST'));
    await assert.rejects(a.renew('A'.repeat(22)), isCode('NOT_FOUND'));
    assert.equal(await a.get(lease.id), null);
  });

  test('a long wait keeps the lease deadline anchored at the grant, not at the call', async () => {
    const holder = await open('holder');
    const waiter = await open('waiter');
    const held = await holder.acquire('c/anchor', { ttlMs: 10_000 });
    const waiting = waiter.acquire('c/anchor', { ttlMs: 2000, waitMs: 10_000 });
    await sleep(1500);
    await held.release();
    const lease = await waiting;
    // The engine would otherwise place the deadline 1.5 s (the wait) too early: ~300 ms left.
    assert.ok(lease.remainingMs > 1500, `only ${Math.round(lease.remainingMs)} ms left of a 2000 ms lease just granted`);
    await lease.release();
  });

  test('a wait longer than the server maximum is sent again and granted when the key frees up', async () => {
    const holder = await open('holder');
    const waiter = await open('waiter');
    const held = await holder.acquire('c/loop');
    const waiting = waiter.acquire('c/loop', { waitMs: 5000 });
    await sleep(1000); // more than three server maximums (300 ms)
    const releasedAt = performance.now();
    await held.release();
    const lease = await waiting;
    assert.ok(performance.now() - releasedAt < 500);
    assert.equal(lease.owner, 'waiter');
    await lease.release();
  });

  test('a wait that runs out throws WaitTimeoutError after the whole waitMs, with the holders', async () => {
    const holder = await open('backup-7');
    const waiter = await open('waiter');
    await holder.acquire('c/timeout', { metadata: { message: 'Backup in progress' } });
    const started = performance.now();
    const error = await waiter.acquire('c/timeout', { waitMs: 800 }).then(() => null, (e: unknown) => e);
    const took = performance.now() - started;
    assert.ok(error instanceof WaitTimeoutError, String(error));
    assert.ok(took >= 780 && took < 2000, `gave up after ${Math.round(took)} ms`);
    assert.equal(error.holders[0]!.owner, 'backup-7');
    assert.match(error.message, /Backup in progress/);
    assert.deepEqual((await server.store.list({ prefix: 'c/timeout' })).waiters, []);
  });

  test('an aborted wait rejects with the reason and nothing of it is left on the server', async () => {
    const holder = await open('holder');
    const waiter = await open('waiter');
    const held = await holder.acquire('c/abort');
    for (let round = 0; round < 20; round++) {
      const abort = new AbortController();
      const waiting = waiter.acquire('c/abort', { waitMs: 20_000, signal: abort.signal });
      waiting.catch(() => {});
      while ((await server.store.list({ prefix: 'c/abort' })).waiters.length === 0) await sleep(5);
      const reason = new Error(`round ${round}`);
      abort.abort(reason);
      await assert.rejects(waiting, (e) => e === reason);
      assert.deepEqual((await server.store.list({ prefix: 'c/abort' })).waiters, [], 'the waiter is gone when acquire rejects');
    }
    await held.release();
  });

  test('an abort just as the holder releases leaves the key free', async () => {
    const holder = await open('holder');
    const waiter = await open('waiter');
    for (let round = 0; round < 30; round++) {
      const key = `c/abort-race/${round}`;
      const held = await holder.acquire(key);
      const abort = new AbortController();
      const waiting = waiter.acquire(key, { waitMs: 20_000, signal: abort.signal });
      waiting.catch(() => {});
      while ((await server.store.list({ prefix: key })).waiters.length === 0) await sleep(2);
      const released = held.release();
      if (round % 2 === 1) await sleep(round % 4);
      abort.abort(new Error('gave up'));
      await released;
      const lease = await waiting.catch(() => null);
      if (lease) await lease.release(); // it arrived before the abort: the caller has it and releases it
      const table = await server.store.list({ prefix: key });
      assert.deepEqual([table.locks, table.waiters], [[], []], `round ${round}`);
    }
  });

  test('410 makes a Lease lost; its signal aborts', async () => {
    const a = await open('a');
    const lease = await a.acquire('c/forced', { ttlMs: 900 });
    await server.store.forceRelease('c/forced', { by: 'test' });
    await assert.rejects(lease.renew(), (e) => e instanceof LeaseLostError);
    assert.equal(lease.state, 'lost');
    assert.equal(lease.signal.aborted, true);
  });

  test('the store protocol without a signal: queued tickets, poll and cancel', async () => {
    const holder = await open('holder');
    const raw = await openStore(server.url);
    try {
      const held = await holder.acquire('c/ticket');
      const { validateRequest } = await import('../../src/index.js');
      const { request } = validateRequest({ owner: 'raw', resources: ['c/ticket'] });
      const queued = await raw.acquire(request, { waitMs: 10_000, waiterTtlMs: 2000 });
      assert.equal(queued.status, 'queued');
      assert.equal(queued.status === 'queued' && queued.ticket, request.id);
      assert.equal((await raw.poll(request.id)).status, 'queued');
      await held.release();
      const granted = await raw.poll(request.id);
      assert.equal(granted.status, 'granted');
      assert.equal(granted.status === 'granted' && granted.lease.id, request.id);
      assert.equal(await raw.cancel(request.id), true, 'cancelling a granted ticket releases its lease');
    } finally {
      await raw.close();
    }
  });

  test('events: true follows the server event stream into watch() and Locks change events', async () => {
    const watcher = await open('watcher', { events: true });
    const other = await open('other');
    const seen: StoreChange[] = [];
    watcher.on('change', (change) => seen.push(change));
    await sleep(100);
    const lease = await other.acquire('c/events');
    await lease.release();
    while (seen.filter((c) => c.keys.includes('c/events')).length < 2) await sleep(10);
    assert.deepEqual(seen.filter((c) => c.keys.includes('c/events')).map((c) => c.type), ['acquired', 'released']);
    assert.equal(seen[0]!.owner, 'other');
    assert.deepEqual(seen[0]!.granted, [], 'events never carry lease ids');
  });

  test('a forced release reaches a lease at once with events: true', async () => {
    const locks = await open('worker', { events: true });
    await sleep(100);
    const lease = await locks.acquire('c/forced-push', { ttlMs: 30_000 });
    const lost = once(lease, 'lost');
    await server.store.forceRelease('c/forced-push', { by: 'ops' });
    await lost;
    assert.equal(lease.state, 'lost');
  });

  test('bad store options are INVALID_REQUEST naming the option', async () => {
    await assert.rejects(openLocks(server.url, { storeOptions: { tokn: 'x' } }), (e) => isCode('INVALID_REQUEST')(e) && /tokn/.test(String(e)));
    await assert.rejects(openLocks('http://user:pw@127.0.0.1:1', {}), (e) => isCode('INVALID_REQUEST')(e) && /token/.test(String(e)));
  });
});

describe('http store without a server', () => {
  test('opening works; calls are STORE_UNAVAILABLE (503) naming the server', async () => {
    const probe = await testServer();
    const url = probe.url;
    await probe.close();
    const locks = await openLocks(url, { owner: 'a' });
    try {
      const error = await locks.acquire('x').then(() => null, (e: unknown) => e);
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.equal(error.status, 503);
      assert.match(error.message, new RegExp(url.replace(/[.]/g, '\\.')));
      await assert.rejects(locks.list(), (e) => e instanceof StoreUnavailableError);
    } finally {
      await locks.close();
    }
  });
});
