/**
 * Every route that takes a lease or ticket id checks the owner behind the id against the token
 * before anything changes: a token of team A sending team B's ids (a lease, a queued ticket, a
 * held-open wait, a wait parked after its hold) gets 403 FORBIDDEN on every route, and B's lease,
 * queue places and waits are exactly as before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TokenConfig } from '../../src/index.js';
import { rawRequest, sleep, testServer, type TestServer } from './helpers.js';

const A = 'team-a-secret-0123456789abcdef';
const B = 'team-b-secret-0123456789abcdef';
const ADMIN = 'admin-secret-0123456789abcdef';
const TOKENS: TokenConfig[] = [
  { name: 'team-a', token: A, owners: 'team-a*' },
  { name: 'team-b', token: B, owners: 'team-b*' },
  { name: 'ops', token: ADMIN, admin: true },
];
const HOLD_MS = 1500;

let server: TestServer;

async function call(token: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: Record<string, unknown>) {
  const res = await server.app.inject({ method, url, ...(payload ? { payload } : {}), headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** What B has in the store, compared before and after the foreign calls. */
async function snapshot(leaseId: string) {
  const lease = await server.store.get(leaseId);
  const table = await server.store.list({ prefix: 'idauth/' });
  const history = await server.store.history({ key: 'idauth/held' });
  return { lease, waiters: table.waiters.map((w) => `${w.key} ${w.owner} ${w.position}`).sort(), history: history.map((e) => `${e.type} ${e.fence} ${e.by}`) };
}

describe('authorization of ids', () => {
  before(async () => {
    server = await testServer({ tokens: TOKENS, maxWaitMs: HOLD_MS });
  });
  after(() => server.close());

  test('a foreign token is refused 403 on every id-taking route, and nothing changes', async () => {
    const held = await call(B, 'POST', '/v1/leases', { key: 'idauth/held', owner: 'team-b-1', ttlMs: 600_000 });
    assert.equal(held.status, 201);
    const lease = held.body['lease'].id as string;
    // A ticket queued with queue: true.
    const queued = await call(B, 'POST', '/v1/leases', { key: 'idauth/held', owner: 'team-b-2', waitMs: 600_000, queue: true, id: 'ticket-of-team-b-0001' });
    assert.equal(queued.status, 202);
    const ticket = queued.body['ticket'] as string;
    // A wait cut at maxWaitMs, parked for its client's next call.
    const cut = rawRequest(server.url, 'POST', '/v1/leases', { key: 'idauth/held', owner: 'team-b-3', waitMs: 600_000, id: 'parked-of-team-b-0001' }, { authorization: `Bearer ${B}` });
    assert.equal((await cut.answer).status, 409);
    // A wait held open right now.
    const open = rawRequest(server.url, 'POST', '/v1/leases', { key: 'idauth/held', owner: 'team-b-4', waitMs: 600_000, id: 'holding-of-team-b-001' }, { authorization: `Bearer ${B}` });
    await sleep(200);
    const before = await snapshot(lease);
    assert.equal(before.waiters.length, 3, `three of B's requests are queued: ${JSON.stringify(before.waiters)}`);

    const routes: [method: 'GET' | 'POST' | 'DELETE', url: string, body?: Record<string, unknown>][] = [];
    for (const id of [lease, ticket, 'parked-of-team-b-0001', 'holding-of-team-b-001']) {
      routes.push(
        ['GET', `/v1/leases/${id}`],
        ['POST', `/v1/leases/${id}/renew`, { ttlMs: 1000 }],
        ['DELETE', `/v1/leases/${id}`],
        ['POST', `/v1/tickets/${id}/poll`],
        ['DELETE', `/v1/tickets/${id}`],
      );
    }
    routes.push(['DELETE', '/v1/owners/team-b-1/leases']);
    for (const [method, url, body] of routes) {
      const answer = await call(A, method, url, body);
      assert.equal(answer.status, 403, `${method} ${url}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body['error']?.code, 'FORBIDDEN', `${method} ${url}`);
    }
    assert.deepEqual(await snapshot(lease), before, 'the foreign calls changed nothing');

    // B's own calls still work on all of them, and the held-open wait was never disturbed.
    assert.equal((await call(B, 'POST', `/v1/tickets/${ticket}/poll`)).body['status'], 'queued');
    assert.deepEqual((await call(B, 'DELETE', `/v1/tickets/${ticket}`)).body, { released: false });
    assert.deepEqual((await call(B, 'DELETE', '/v1/tickets/parked-of-team-b-0001')).body, { released: false });
    assert.deepEqual((await call(B, 'DELETE', '/v1/tickets/holding-of-team-b-001')).body, { released: false });
    assert.equal((await open.answer).status, 499, 'the held-open wait ended by its own client');
    assert.equal((await call(B, 'POST', `/v1/leases/${lease}/renew`)).status, 200);
    assert.deepEqual((await call(B, 'DELETE', `/v1/leases/${lease}`)).body, { released: true });
  });

  test('an admin token may read, poll and end another owner\'s lease by id', async () => {
    const { lease } = (await call(B, 'POST', '/v1/leases', { key: 'idauth/admin', owner: 'team-b-9' })).body;
    assert.equal((await call(ADMIN, 'GET', `/v1/leases/${lease.id}`)).status, 200);
    assert.equal((await call(ADMIN, 'POST', `/v1/tickets/${lease.id}/poll`)).body['status'], 'granted');
    assert.deepEqual((await call(ADMIN, 'DELETE', `/v1/tickets/${lease.id}`)).body, { released: true });
  });

  test('a lease ended by id records the real actor in history: the token\'s name (and the `by` it gave)', async () => {
    const take = async (key: string) => (await call(B, 'POST', '/v1/leases', { key, owner: 'team-b-5' })).body['lease'] as { id: string; fence: number };
    const own = await take('idauth/actor/own');
    const byAdmin = await take('idauth/actor/admin');
    const byAdminFor = await take('idauth/actor/admin-for');
    const cancelled = await take('idauth/actor/cancelled');
    assert.deepEqual((await call(B, 'DELETE', `/v1/leases/${own.id}`)).body, { released: true });
    assert.deepEqual((await call(ADMIN, 'DELETE', `/v1/leases/${byAdmin.id}`)).body, { released: true });
    assert.deepEqual((await call(ADMIN, 'DELETE', `/v1/leases/${byAdminFor.id}?by=alice`)).body, { released: true });
    assert.deepEqual((await call(ADMIN, 'DELETE', `/v1/tickets/${cancelled.id}`)).body, { released: true });
    const bad = await call(ADMIN, 'DELETE', `/v1/leases/${own.id}?by=`);
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    const history = await server.store.history({ owner: 'team-b-5' });
    const endOf = (fence: number) => {
      const event = history.find((e) => e.fence === fence && e.type === 'released');
      return event && `${event.by} ${event.reason}`;
    };
    assert.equal(endOf(own.fence), 'team-b release', 'the owner\'s token');
    assert.equal(endOf(byAdmin.fence), 'ops release', 'the admin token, not the lease\'s owner');
    assert.equal(endOf(byAdminFor.fence), 'ops:alice release');
    assert.equal(endOf(cancelled.fence), 'ops cancelled');
  });

  test('a ticket this server did not queue is refused to a non-admin token and left alone', async () => {
    // Queued straight in the store (as another server sharing it would): its owner is not known here.
    const request = (id: string, owner: string) => ({
      id, owner, resources: [{ key: 'idauth/other', mode: 'exclusive' as const, limit: null }], ttlMs: 600_000, requestId: null, metadata: {}, lockDelayMs: 0,
    });
    assert.equal((await server.store.acquire(request('elsewhere-lease-00001', 'team-b-6'), { waitMs: 0, waiterTtlMs: 5000 })).status, 'granted');
    assert.equal((await server.store.acquire(request('elsewhere-ticket-0001', 'team-b-7'), { waitMs: 600_000, waiterTtlMs: 60_000 })).status, 'queued');
    for (const token of [A, B]) {
      const polled = await call(token, 'POST', '/v1/tickets/elsewhere-ticket-0001/poll');
      assert.equal(polled.status, 403, JSON.stringify(polled.body));
      assert.match(polled.body['error'].message, /not queued through this server/);
      assert.equal((await call(token, 'DELETE', '/v1/tickets/elsewhere-ticket-0001')).status, 403);
    }
    assert.equal((await server.store.list({ prefix: 'idauth/other' })).waiters.length, 1, 'still queued');
    assert.equal((await call(ADMIN, 'POST', '/v1/tickets/elsewhere-ticket-0001/poll')).body['status'], 'queued');
    assert.deepEqual((await call(ADMIN, 'DELETE', '/v1/tickets/elsewhere-ticket-0001')).body, { released: false });
    assert.equal((await server.store.list({ prefix: 'idauth/other' })).waiters.length, 0);
  });
});
