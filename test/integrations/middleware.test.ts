/**
 * The Express and Fastify route locks: 409 with the SPEC body, Shipyard's sentence and
 * Retry-After when busy; the lock is released before the answer leaves, when the handler throws,
 * and when the client goes away; waiting routes; store and input errors answered as SPEC errors;
 * a failed release is logged and never fails the request.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import {
  expressLock, fastifyLock, openLocks, openStore, StoreUnavailableError, type Locks, type LockStore,
} from '../../src/index.js';
import { LogLines, sleep } from '../server/helpers.js';

/** A store whose calls fail while `down.release` / `down.acquire` is set. */
function failing(store: LockStore, down: { release: boolean; acquire: boolean }): LockStore {
  return new Proxy(store, {
    get(target, name) {
      if ((name === 'release' && down.release) || (name === 'acquire' && down.acquire)) {
        return async () => Promise.reject(new StoreUnavailableError('connection refused'));
      }
      const value: unknown = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function post(url: string, headers: Record<string, string> = {}): Promise<{ status: number; retryAfter: string | null; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await fetch(url, { method: 'POST', headers });
  const text = await res.text();
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: text.startsWith('{') ? JSON.parse(text) : text };
}

describe('Express route lock', () => {
  let store: LockStore;
  let locks: Locks;
  let server: Server;
  let url: string;
  const down = { release: false, acquire: false };
  const logged: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  let entered: () => void = () => {};

  before(async () => {
    store = await openStore('memory:');
    locks = await openLocks(failing(store, down), { owner: 'express' });
    const app = express();
    const lock = expressLock({
      locks, key: (req: express.Request) => `ex/${req.params['doc']}`, ttlMs: 20_000,
      owner: (req: express.Request) => String(req.headers['x-user'] ?? 'anonymous'),
      logger: { error: (_object, message) => logged.push(String(message)) },
    });
    app.post('/docs/:doc', lock, async (req, res) => {
      entered();
      await gate;
      if (req.headers['x-fail']) throw new Error('handler failed');
      res.json({ fence: (res.locals['lease'] as { fence: number }).fence });
    });
    app.post('/wait/:doc', expressLock({ locks, key: (req: express.Request) => `ex/${req.params['doc']}`, waitMs: 5000 }), (_req, res) => {
      res.json({ ok: true });
    });
    app.post('/bad', expressLock({ locks, key: () => 'ex//bad' }), (_req, res) => res.json({ ok: true }));
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await locks.close();
    await store.close();
  });

  test('busy: 409 with the SPEC body, the sentence and Retry-After; free again right after the answer', async () => {
    let open: () => void = () => {};
    gate = new Promise((resolve) => (open = resolve));
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = post(`${url}/docs/a`, { 'x-user': 'alice' });
    await inside;
    const blocked = await post(`${url}/docs/a`, { 'x-user': 'bob' });
    assert.equal(blocked.status, 409);
    assert.equal(blocked.body.error.code, 'LOCK_BUSY');
    assert.match(blocked.body.error.message, /^Blocked by another process: .* a lock for ex\/a\. Lock expires in not more than 20 seconds$/);
    assert.equal(blocked.retryAfter, '20');
    assert.equal(blocked.body.error.holders[0].owner, 'alice');
    assert.ok(blocked.body.error.retryAfterMs > 19_000);
    open();
    assert.equal((await first).status, 200);
    assert.deepEqual((await store.list({ prefix: 'ex/a' })).locks, [], 'released before the answer was sent');
    assert.equal((await post(`${url}/docs/a`)).status, 200);
  });

  test('a waiting route waits for the lock; a handler that throws releases it', async () => {
    let open: () => void = () => {};
    gate = new Promise((resolve) => (open = resolve));
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const failingCall = post(`${url}/docs/w`, { 'x-fail': '1' });
    await inside;
    const waiting = post(`${url}/wait/w`);
    await sleep(50);
    open();
    assert.equal((await failingCall).status, 500);
    assert.equal((await waiting).status, 200);
    assert.deepEqual((await store.list({ prefix: 'ex/w' })).locks, []);
  });

  test('a client that goes away mid-handler releases the lock', async () => {
    let open: () => void = () => {};
    gate = new Promise((resolve) => (open = resolve));
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const abort = new AbortController();
    const call = fetch(`${url}/docs/gone`, { method: 'POST', signal: abort.signal }).catch(() => null);
    await inside;
    abort.abort();
    await call;
    for (let i = 0; i < 100 && (await store.list({ prefix: 'ex/gone' })).locks.length > 0; i++) await sleep(10);
    assert.deepEqual((await store.list({ prefix: 'ex/gone' })).locks, []);
    open();
  });

  test('a failed release is logged and the request still succeeds; store errors on acquire are 503; bad keys 400', async () => {
    gate = Promise.resolve();
    down.release = true;
    try {
      const ok = await post(`${url}/docs/outage`);
      assert.equal(ok.status, 200);
    } finally {
      down.release = false;
    }
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /release of the lock on ex\/outage failed; it will expire in not more than 20 seconds/);
    down.acquire = true;
    try {
      const unavailable = await post(`${url}/docs/x`);
      assert.equal(unavailable.status, 503);
      assert.equal(unavailable.body.error.code, 'STORE_UNAVAILABLE');
    } finally {
      down.acquire = false;
    }
    const bad = await post(`${url}/bad`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'INVALID_REQUEST');
  });
});

describe('Fastify route lock', () => {
  test('leaseOf gives the handler its lease; busy is 409; a failed release goes to request.log', async () => {
    const store = await openStore('memory:');
    const down = { release: false, acquire: false };
    const locks = await openLocks(failing(store, down), { owner: 'fastify' });
    const logs = new LogLines();
    const app = Fastify({ logger: { level: 'error', stream: logs } });
    const lock = fastifyLock({ locks, key: (request) => `fy/${(request.params as { doc: string }).doc}`, ttlMs: '30s', name: 'the document' });
    let open: () => void = () => {};
    let gate: Promise<void> = Promise.resolve();
    app.post('/docs/:doc', { ...lock.hooks }, async (request) => {
      const lease = lock.leaseOf(request)!;
      assert.equal(lease.state, 'held');
      await gate;
      return { fence: lease.fence, aborted: lease.signal.aborted };
    });
    try {
      gate = new Promise((resolve) => (open = resolve));
      const first = app.inject({ method: 'POST', url: '/docs/1' }).then((r) => r);
      while ((await store.list({ prefix: 'fy/1' })).locks.length === 0) await sleep(5);
      const blocked = await app.inject({ method: 'POST', url: '/docs/1' });
      assert.equal(blocked.statusCode, 409);
      assert.equal(blocked.headers['retry-after'], '30');
      assert.match(blocked.json().error.message, /a lock for the document\. Lock expires in not more than 30 seconds$/);
      open();
      const done = await first;
      assert.equal(done.statusCode, 200);
      assert.equal(done.json().aborted, false);
      assert.deepEqual((await store.list()).locks, []);

      down.release = true;
      const outage = await app.inject({ method: 'POST', url: '/docs/2' });
      assert.equal(outage.statusCode, 200);
      assert.match(logs.text, /release of the lock on fy\/2 failed/);
      down.release = false;
    } finally {
      await app.close();
      await locks.close();
      await store.close();
    }
  });
});
