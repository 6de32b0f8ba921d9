/**
 * Waits longer than the server's `maxWaitMs` keep their queue place: the server cuts the held-open
 * request (409 WAIT_TIMEOUT with `maxWaitMs`) but keeps it queued for `waiterTtlMs`, so the same
 * request sent again (same `id`) goes on in the same place, or gets the lease granted meanwhile.
 * A client that does not come back loses the place then, and a lease granted to it meanwhile is
 * released. Checked on the memory store and on a SQLite file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newLeaseId, openLocks, type Lease, type Locks } from '../../src/index.js';
import { rawRequest, sleep, testServer, type TestServer } from './helpers.js';

const MAX_WAIT_MS = 200;
const WAITER_TTL_MS = 600;

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

type Answer = Awaited<ReturnType<typeof rawRequest>['answer']>;
const errorOf = (answer: Answer): { code: string; field?: string; maxWaitMs?: number } =>
  (answer.body as { error: { code: string; field?: string; maxWaitMs?: number } }).error;
const leaseOf = (answer: Answer): { id: string; owner: string } => (answer.body as { lease: { id: string; owner: string } }).lease;

for (const kind of ['memory', 'sqlite'] as const) {
  describe(`waits longer than the server maximum (${kind})`, () => {
    let server: TestServer;
    let dir: string;
    const clients: Locks[] = [];
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'holdfast-long-waits-'));
      server = await testServer({
        maxWaitMs: MAX_WAIT_MS, waiterTtlMs: WAITER_TTL_MS, ...(kind === 'sqlite' ? { store: `sqlite:${join(dir, 'locks.db')}` } : {}),
      });
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const client = async (owner: string): Promise<Locks> => {
      const locks = await openLocks(server.url, { owner });
      clients.push(locks);
      return locks;
    };
    const hold = async (key: string): Promise<string> => {
      const answer = await rawRequest(server.url, 'POST', '/v1/leases', { key, owner: 'holder', ttlMs: 30_000 }).answer;
      assert.equal(answer.status, 201);
      return leaseOf(answer).id;
    };
    const queued = async (key: string): Promise<string[]> => (await server.store.list({ prefix: key })).waiters.map((w) => w.owner);
    const send = (key: string, owner: string, id?: string): Promise<Answer> =>
      rawRequest(server.url, 'POST', '/v1/leases', { key, owner, waitMs: 10_000, ...(id === undefined ? {} : { id }) }).answer;

    test('the library client waits through several cuts in its first place: a later waiter does not overtake it', async () => {
      const key = `${kind}/order`;
      const holder = await hold(key);
      const [first, second] = [await client('first'), await client('second')];
      const granted: string[] = [];
      const note = (lease: Lease): Lease => {
        granted.push(lease.owner);
        return lease;
      };
      const a = first.acquire(key, { waitMs: 10_000 }).then(note);
      await until(async () => (await queued(key)).length === 1, 'the first waiter is queued');
      await sleep(MAX_WAIT_MS + 100); // cut once: sent again
      const b = second.acquire(key, { waitMs: 10_000 }).then(note);
      await until(async () => (await queued(key)).length === 2, 'the second waiter is queued');
      await sleep(3 * MAX_WAIT_MS); // both cut a few times more
      assert.deepEqual(await queued(key), ['first', 'second'], 'queue order across cuts');
      await server.store.release(holder);
      const leaseA = await a;
      assert.deepEqual(granted, ['first']);
      await sleep(2 * MAX_WAIT_MS);
      assert.deepEqual(granted, ['first'], 'the second waits while the first holds');
      await leaseA.release();
      await (await b).release();
      assert.deepEqual(granted, ['first', 'second']);
    });

    test('sent again with the same id, a cut request goes on in its place and gets the lease granted meanwhile', async () => {
      const key = `${kind}/resume`;
      const holder = await hold(key);
      const id = newLeaseId();
      const cut = await send(key, 'resumer', id);
      assert.equal(cut.status, 409);
      assert.equal(errorOf(cut).maxWaitMs, MAX_WAIT_MS);
      assert.deepEqual(await queued(key), ['resumer'], 'still queued after the cut');
      const later = send(key, 'later');
      await until(async () => (await queued(key)).length === 2, 'a later waiter is queued');
      // Granted while nobody holds the request open: kept for the client.
      await server.store.release(holder);
      await until(async () => (await server.store.list({ prefix: key })).locks.length === 1, 'the parked request is granted');
      await sleep(WAITER_TTL_MS / 3 + 50); // a heartbeat has seen the grant
      const resentAt = Date.now();
      const again = await send(key, 'resumer', id);
      assert.equal(again.status, 201);
      assert.equal(leaseOf(again).owner, 'resumer');
      // The answer's store time is read for this call, not taken from the heartbeat that saw the
      // grant: the client places the expiry from it (same machine, same clock here).
      const answeredNow = Date.parse((again.body as { now: string }).now);
      assert.ok(answeredNow >= resentAt - 20, `now ${answeredNow - resentAt} ms from the re-send`);
      assert.equal((await later).status, 409, 'the later waiter is cut while the resumer holds');
      await server.store.release(leaseOf(again).id);
    });

    test('a client that does not come back loses its place after waiterTtlMs; a lease granted to it meanwhile is released', async () => {
      const key = `${kind}/gone`;
      const holder = await hold(key);
      const cut = await send(key, 'vanished', newLeaseId());
      assert.equal(cut.status, 409);
      const cutAt = performance.now();
      await server.store.release(holder);
      await until(async () => (await server.store.list({ prefix: key })).locks.map((l) => l.owner).join() === 'vanished', 'granted while parked');
      await until(async () => (await server.store.list({ prefix: key })).locks.length === 0, 'the unclaimed lease is released', 3 * WAITER_TTL_MS);
      const freedAfter = performance.now() - cutAt;
      assert.ok(freedAfter >= WAITER_TTL_MS - 50, `released ${Math.round(freedAfter)} ms after the cut, before waiterTtlMs`);
      const events = await server.store.history({ key });
      assert.deepEqual(events.filter((e) => e.owner === 'vanished').map((e) => e.type).sort(), ['acquired', 'released']);
    });

    test('a queued cut request that is not sent again leaves the queue, and the next waiter moves up', async () => {
      const key = `${kind}/dropped`;
      const holder = await hold(key);
      assert.equal((await send(key, 'vanished', newLeaseId())).status, 409);
      const patient = (await client('patient')).acquire(key, { waitMs: 10_000 });
      await until(async () => (await queued(key)).join() === 'vanished,patient', 'both queued');
      await until(async () => (await queued(key)).join() === 'patient', 'the vanished client left the queue', 3 * WAITER_TTL_MS);
      await server.store.release(holder);
      await (await patient).release();
    });

    test('DELETE /v1/tickets/{id} ends a parked request; a different request with its id is refused', async () => {
      const key = `${kind}/cancel`;
      const holder = await hold(key);
      const id = newLeaseId();
      assert.equal((await send(key, 'canceller', id)).status, 409);
      const other = await rawRequest(server.url, 'POST', '/v1/leases', { key: `${key}/other`, owner: 'canceller', waitMs: 10_000, id }).answer;
      assert.equal(other.status, 400);
      assert.equal(errorOf(other).field, 'id');
      const cancelled = await rawRequest(server.url, 'DELETE', `/v1/tickets/${id}`).answer;
      assert.equal(cancelled.status, 200);
      assert.deepEqual(await queued(key), []);
      await server.store.release(holder);
    });

    test('a request without an id is not kept: nothing is left queued after the cut', async () => {
      const key = `${kind}/anonymous`;
      const holder = await hold(key);
      assert.equal((await send(key, 'anonymous')).status, 409);
      assert.deepEqual(await queued(key), []);
      await server.store.release(holder);
    });
  });
}

describe('shutdown with a parked request', () => {
  test('closing the server leaves the queue for parked requests and releases what they were granted', async () => {
    const server = await testServer({ maxWaitMs: MAX_WAIT_MS, waiterTtlMs: 60_000 });
    const store = server.store;
    try {
      const first = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'shut/k', owner: 'holder' }).answer;
      assert.equal((await rawRequest(server.url, 'POST', '/v1/leases', { key: 'shut/k', owner: 'parked', waitMs: 10_000, id: newLeaseId() }).answer).status, 409);
      assert.equal((await store.list({ prefix: 'shut/k' })).waiters.length, 1);
      await store.release(leaseOf(first).id);
      await until(async () => (await store.list({ prefix: 'shut/k' })).locks.length === 1, 'granted while parked');
    } finally {
      await server.app.close();
    }
    const left = await store.list({ prefix: 'shut/k' });
    assert.deepEqual([left.locks.length, left.waiters.length], [0, 0]);
    await store.close();
  });
});
