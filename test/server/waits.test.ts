/**
 * Long waits held open by a listening server: granted the moment the holder releases; a client
 * that disconnects leaves the queue, and a lease granted at the moment of the disconnect is
 * released, never stranded; waits longer than the server's maximum are cut with `maxWaitMs`;
 * waits can be cancelled by id; the queue protocol (`queue: true`, tickets); shutdown answers
 * waiting clients and leaves granted leases held.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newLeaseId, openStore } from '../../src/index.js';
import { rawRequest, sleep, testServer, type TestServer } from './helpers.js';

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

describe('held-open waits', () => {
  let server: TestServer;
  before(async () => {
    server = await testServer({ requestTimeoutMs: 1000 });
  });
  after(() => server.close());

  const waiters = async (prefix: string): Promise<number> => (await server.store.list({ prefix })).waiters.length;
  const hold = async (key: string, owner = 'holder'): Promise<string> => {
    const { status, body } = await rawRequest(server.url, 'POST', '/v1/leases', { key, owner, ttlMs: 30_000 }).answer;
    assert.equal(status, 201);
    return (body as { lease: { id: string } }).lease.id;
  };

  test('a waiting request is granted the moment the holder releases, past the request timeout', async () => {
    const id = await hold('w/handoff');
    const waiting = rawRequest(server.url, 'POST', '/v1/leases', { key: 'w/handoff', owner: 'waiter', waitMs: 10_000 });
    await until(async () => (await waiters('w/handoff')) === 1, 'the waiter is queued');
    await sleep(1200); // longer than requestTimeoutMs: a wait is not a slow request
    const releasedAt = performance.now();
    await server.store.release(id);
    const { status, body } = await waiting.answer;
    const handoff = performance.now() - releasedAt;
    assert.equal(status, 201);
    assert.equal((body as { lease: { owner: string } }).lease.owner, 'waiter');
    assert.ok(handoff < 200, `granted ${Math.round(handoff)} ms after the release`);
  });

  test('a client that disconnects while waiting leaves the queue', async () => {
    await hold('w/leave');
    const waiting = rawRequest(server.url, 'POST', '/v1/leases', { key: 'w/leave', owner: 'quitter', waitMs: 20_000 });
    await until(async () => (await waiters('w/leave')) === 1, 'the waiter is queued');
    waiting.req.destroy();
    await until(async () => (await waiters('w/leave')) === 0, 'the waiter has left');
    assert.deepEqual((await server.store.list({ prefix: 'w/leave' })).locks.map((l) => l.owner), ['holder']);
  });

  test('a disconnect just as the holder releases strands nothing: the key is free, nobody waits', async () => {
    for (let round = 0; round < 45; round++) {
      const key = `w/race/${round}`;
      const holder = await hold(key);
      const id = newLeaseId();
      const waiting = rawRequest(server.url, 'POST', '/v1/leases', { key, owner: 'racer', waitMs: 20_000, id });
      await until(async () => (await waiters(key)) === 1, 'the waiter is queued');
      const order = round % 3;
      if (order === 0) {
        // The client disconnects, then the holder releases: the wait must be gone, or its grant released.
        waiting.req.destroy();
        await server.store.release(holder);
      } else if (order === 1) {
        // Both in the same tick: the grant is made before the server has read the disconnect.
        const released = server.store.release(holder);
        waiting.req.destroy();
        await released;
      } else {
        // The client gives up just after the release, while the answer may be on its way: like the
        // http store, it cancels by id, which releases a grant it never read.
        await server.store.release(holder);
        await sleep(round % 2);
        waiting.req.destroy();
        await rawRequest(server.url, 'DELETE', `/v1/tickets/${id}`).answer;
      }
      // An answer the client did read is its lease to release, as a client would.
      const received = await waiting.answer.then((a) => a, () => null);
      if (received?.status === 201) await server.store.release((received.body as { lease: { id: string } }).lease.id);
      await until(async () => {
        const table = await server.store.list({ prefix: key });
        return table.locks.length === 0 && table.waiters.length === 0;
      }, `round ${round} (order ${order}): the key is free and nobody waits`);
      const racer = (await server.store.history({ key })).filter((e) => e.owner === 'racer');
      // Either the wait ended before a grant, or the grant was released.
      if (racer.length > 0) assert.deepEqual(racer.map((e) => e.type).sort(), ['acquired', 'released'], `round ${round}`);
    }
  });

  test('DELETE /v1/tickets/{id} ends a held-open wait and answers once it is gone', async () => {
    await hold('w/cancel');
    const id = newLeaseId();
    const waiting = rawRequest(server.url, 'POST', '/v1/leases', { key: 'w/cancel', owner: 'canceller', waitMs: 20_000, id });
    await until(async () => (await waiters('w/cancel')) === 1, 'the waiter is queued');
    const cancel = await rawRequest(server.url, 'DELETE', `/v1/tickets/${id}`).answer;
    assert.deepEqual(cancel, { ...cancel, status: 200, body: { released: false } });
    assert.equal(await waiters('w/cancel'), 0, 'the cancel is answered after the queue was left');
    waiting.req.destroy();
    const again = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'w/cancel2', owner: 'o', id }).answer;
    assert.equal(again.status, 201, 'the id of an ended wait may be used again');
  });

  test('the queue protocol: 202 with a ticket, polls, grant under the ticket, cancel', async () => {
    const holder = await hold('w/queue');
    const ticket = newLeaseId();
    const queued = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'w/queue', owner: 'q', waitMs: 10_000, queue: true, id: ticket, waiterTtlMs: 2000 }).answer;
    assert.equal(queued.status, 202);
    const q = queued.body as { ticket: string; holders: { owner: string }[]; nextCheckMs: number };
    assert.equal(q.ticket, ticket);
    assert.equal(q.holders[0]!.owner, 'holder');
    const polled = await rawRequest(server.url, 'POST', `/v1/tickets/${ticket}/poll`).answer;
    assert.equal((polled.body as { status: string }).status, 'queued');
    await server.store.release(holder);
    const granted = (await rawRequest(server.url, 'POST', `/v1/tickets/${ticket}/poll`).answer).body as { status: string; lease: { id: string } };
    assert.equal(granted.status, 'granted');
    assert.equal(granted.lease.id, ticket);
    assert.deepEqual((await rawRequest(server.url, 'DELETE', `/v1/tickets/${ticket}`).answer).body, { released: true });
    assert.equal(((await rawRequest(server.url, 'POST', `/v1/tickets/${ticket}/poll`).answer).body as { status: string }).status, 'gone');
    assert.deepEqual((await server.store.list({ prefix: 'w/queue' })).locks, []);
  });
});

describe('the server maximum wait', () => {
  let server: TestServer;
  before(async () => {
    server = await testServer({ maxWaitMs: 200 });
  });
  after(() => server.close());

  test('a longer wait is cut at maxWaitMs: 409 WAIT_TIMEOUT saying so, nothing left queued', async () => {
    await rawRequest(server.url, 'POST', '/v1/leases', { key: 'm/k', owner: 'holder' }).answer;
    const started = performance.now();
    const { status, headers, body } = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'm/k', owner: 'w', waitMs: 5000 }).answer;
    const took = performance.now() - started;
    assert.equal(status, 409);
    assert.ok(took >= 190 && took < 1500, `answered after ${Math.round(took)} ms`);
    const error = (body as { error: { code: string; maxWaitMs: number } }).error;
    assert.equal(error.code, 'WAIT_TIMEOUT');
    assert.equal(error.maxWaitMs, 200);
    assert.ok(headers['retry-after']);
    assert.deepEqual((await server.store.list({ prefix: 'm/k' })).waiters, []);
  });
});

describe('shutdown', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-shutdown-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('closing answers waiting clients 503 and leaves granted leases held for their clients', async () => {
    const url = `sqlite:${join(dir, 'locks.db')}`;
    const first = await testServer({ store: url });
    const granted = await rawRequest(first.url, 'POST', '/v1/leases', { key: 's/k', owner: 'client', ttlMs: 60_000 }).answer;
    const lease = (granted.body as { lease: { id: string; fence: number } }).lease;
    const waiting = rawRequest(first.url, 'POST', '/v1/leases', { key: 's/k', owner: 'waiter', waitMs: 30_000 });
    await until(async () => (await first.store.list()).waiters.length === 1, 'the waiter is queued');
    const closing = first.close();
    const { status, body } = await waiting.answer;
    assert.equal(status, 503);
    assert.equal((body as { error: { code: string } }).error.code, 'STORE_UNAVAILABLE');
    await closing;

    const store = await openStore(url);
    const second = await testServer({ store });
    try {
      const table = await store.list();
      assert.deepEqual(table.locks.map((l) => `${l.key}:${l.owner}:${l.fence}`), [`s/k:client:${lease.fence}`]);
      assert.deepEqual(table.waiters, []);
      const renewed = await rawRequest(second.url, 'POST', `/v1/leases/${lease.id}/renew`).answer;
      assert.equal(renewed.status, 200, 'the client renews its lease on the restarted server');
    } finally {
      await second.close();
      await store.close();
    }
  });
});
