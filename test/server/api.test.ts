/**
 * The HTTP API of SPEC section 5 through `inject`: paths, bodies, status codes, error bodies,
 * `Retry-After`, the shorthand and the full request, keys with `/` in paths, renew and release
 * semantics, history, health, metrics and the OpenAPI document.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { LockStore } from '../../src/index.js';
import { sleep, testServer, type TestServer } from './helpers.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-only JSON access
}

let server: TestServer;
let app: FastifyInstance;
let store: LockStore;

async function call(method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown): Promise<Reply> {
  const res = await app.inject({
    method, url, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    ...(typeof payload === 'string' ? { headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: res.statusCode, headers: res.headers, body: res.body === '' ? {} : (res.json() as Record<string, unknown>) };
}

function assertError(reply: Reply, status: number, code: string, field?: string): void {
  assert.equal(reply.status, status, JSON.stringify(reply.body));
  assert.equal(reply.body['error']?.code, code);
  assert.equal(typeof reply.body['error']?.message, 'string');
  if (field !== undefined) assert.equal(reply.body['error'].field, field);
}

describe('HTTP API', () => {
  before(async () => {
    server = await testServer({ listen: false });
    app = server.app;
    store = server.store;
  });
  after(() => server.close());

  test('POST /v1/leases: the shorthand grants 201 { lease, now } with ISO times next to ttlMs', async () => {
    const reply = await call('POST', '/v1/leases', { key: 'api/a', owner: 'backup-7', ttlMs: '45s', metadata: { message: 'Backup of app 42' } });
    assert.equal(reply.status, 201);
    const { lease, now } = reply.body;
    assert.match(lease.id, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(lease.owner, 'backup-7');
    assert.deepEqual(lease.resources, [{ key: 'api/a', mode: 'exclusive', limit: null }]);
    assert.ok(Number.isInteger(lease.fence) && lease.fence > 0);
    assert.match(lease.acquiredAt, ISO);
    assert.match(lease.expiresAt, ISO);
    assert.match(now, ISO);
    assert.equal(lease.ttlMs, 45_000);
    assert.equal(Date.parse(lease.expiresAt) - Date.parse(lease.acquiredAt), 45_000);
    assert.deepEqual(lease.metadata, { message: 'Backup of app 42' });
    assert.match(String(reply.headers['server-timing']), /^grant;dur=[0-9.]+$/);
    assert.ok(reply.headers['x-request-id']);
  });

  test('POST /v1/leases: the full request takes several resources, shared with a limit', async () => {
    const body = { owner: 'vdsm', resources: [{ key: 'api/pools/P', mode: 'shared', limit: 2 }, 'api/domains/D'], waitMs: 0 };
    const reply = await call('POST', '/v1/leases', body);
    assert.equal(reply.status, 201);
    assert.deepEqual(reply.body['lease'].resources, [
      { key: 'api/pools/P', mode: 'shared', limit: 2 }, { key: 'api/domains/D', mode: 'exclusive', limit: null },
    ]);
    const second = await call('POST', '/v1/leases', { key: 'api/pools/P', mode: 'shared', limit: 2, owner: 'other' });
    assert.equal(second.status, 201);
  });

  test('LOCK_BUSY: 409 with holders, retryAfterMs, now and Retry-After in whole seconds', async () => {
    await call('POST', '/v1/leases', { key: 'api/busy', owner: 'backup-7', ttlMs: 25_000, metadata: { message: 'Backup in progress' } });
    const reply = await call('POST', '/v1/leases', { key: 'api/busy', owner: 'other' });
    assertError(reply, 409, 'LOCK_BUSY');
    const error = reply.body['error'];
    assert.match(error.message, /"api\/busy" is held by owner "backup-7" \(exclusive\) since \d\d:\d\d:\d\d, expires in 2[45] s: Backup in progress/);
    assert.equal(error.holders.length, 1);
    assert.deepEqual(
      { key: error.holders[0].key, owner: error.holders[0].owner, mode: error.holders[0].mode, state: error.holders[0].state },
      { key: 'api/busy', owner: 'backup-7', mode: 'exclusive', state: 'held' },
    );
    assert.ok(error.retryAfterMs > 24_000 && error.retryAfterMs <= 25_000);
    assert.equal(reply.headers['retry-after'], String(Math.ceil(error.retryAfterMs / 1000)));
    assert.match(error.now, ISO);
  });

  test('a wait that runs out answers 409 WAIT_TIMEOUT with the holders', async () => {
    await call('POST', '/v1/leases', { key: 'api/wait', owner: 'holder' });
    const started = performance.now();
    const reply = await call('POST', '/v1/leases', { key: 'api/wait', owner: 'waiter', waitMs: 150 });
    assert.ok(performance.now() - started >= 140);
    assertError(reply, 409, 'WAIT_TIMEOUT');
    assert.equal(reply.body['error'].holders[0].owner, 'holder');
    assert.equal(reply.body['error'].maxWaitMs, undefined, 'the wait was not cut by the server maximum');
    assert.deepEqual((await store.list({ prefix: 'api/wait' })).waiters, []);
  });

  test('GET, renew and DELETE a lease by id: 200, 410 once ended, 404 unknown', async () => {
    const { lease } = (await call('POST', '/v1/leases', { key: 'api/renew', owner: 'o', ttlMs: 1000 })).body;
    const read = await call('GET', `/v1/leases/${lease.id}`);
    assert.equal(read.status, 200);
    assert.equal(read.body['lease'].fence, lease.fence);
    assert.match(read.body['now'], ISO);

    const same = await call('POST', `/v1/leases/${lease.id}/renew`);
    assert.equal(same.status, 200);
    assert.equal(same.body['lease'].ttlMs, 1000, 'without ttlMs the lease keeps its TTL');
    const longer = await call('POST', `/v1/leases/${lease.id}/renew`, { ttlMs: '2m' });
    assert.equal(longer.body['lease'].ttlMs, 120_000);
    assert.ok(Date.parse(longer.body['lease'].expiresAt) > Date.parse(lease.expiresAt) + 100_000);
    assert.equal(longer.body['lease'].fence, lease.fence);

    assert.deepEqual((await call('DELETE', `/v1/leases/${lease.id}`)).body, { released: true });
    assert.deepEqual((await call('DELETE', `/v1/leases/${lease.id}`)).body, { released: false });
    assertError(await call('POST', `/v1/leases/${lease.id}/renew`), 410, 'LEASE_LOST');
    assertError(await call('GET', `/v1/leases/${lease.id}`), 404, 'NOT_FOUND');
    const unknown = 'A'.repeat(22);
    assertError(await call('POST', `/v1/leases/${unknown}/renew`), 404, 'NOT_FOUND');
    assert.deepEqual((await call('DELETE', `/v1/leases/${unknown}`)).body, { released: false });
    assertError(await call('GET', '/v1/leases/short'), 400, 'INVALID_REQUEST', 'id');
    assertError(await call('POST', `/v1/leases/${lease.id}/renew`, { ttlMs: 5 }), 400, 'INVALID_REQUEST', 'ttlMs');
  });

  test('DELETE /v1/owners/{owner}/leases releases an owner\'s leases, or those on one key', async () => {
    const owner = 'task 17/ü?&';
    for (const key of ['api/own/a', 'api/own/b', 'api/own/c']) await call('POST', '/v1/leases', { key, owner });
    const path = `/v1/owners/${encodeURIComponent(owner)}/leases`;
    assert.deepEqual((await call('DELETE', `${path}?key=api%2Fown%2Fb&by=cleanup`)).body, { released: 1 });
    assert.deepEqual((await store.list({ prefix: 'api/own/' })).locks.map((l) => l.key), ['api/own/a', 'api/own/c']);
    assert.deepEqual((await call('DELETE', path)).body, { released: 2 });
    assert.deepEqual((await call('DELETE', path)).body, { released: 0 });
    const events = (await call('GET', `/v1/history?key=${encodeURIComponent('api/own/b')}`)).body['events'];
    assert.equal(events[0].type, 'released');
    assert.equal(events[0].by, 'cleanup');
    assert.equal(events[0].reason, 'release-owner');
    assertError(await call('DELETE', '/v1/owners/x/leases?key=a%2F%2Fb'), 400, 'INVALID_REQUEST', 'key');
  });

  test('DELETE /v1/locks/{key} takes the key URL-encoded and as a path tail', async () => {
    await call('POST', '/v1/leases', { key: 'api/force/one', owner: 'a' });
    await call('POST', '/v1/leases', { key: 'api/force/two', owner: 'b' });
    assert.deepEqual((await call('DELETE', '/v1/locks/api%2Fforce%2Fone?by=ops')).body, { released: 1 });
    assert.deepEqual((await call('DELETE', '/v1/locks/api/force/two')).body, { released: 1 });
    assert.deepEqual((await call('DELETE', '/v1/locks/api/force/two')).body, { released: 0 });
    const events = (await call('GET', '/v1/history?key=api%2Fforce%2Fone&limit=1')).body['events'];
    assert.deepEqual([events[0].type, events[0].by, events[0].reason], ['forced', 'ops', 'force']);
    assertError(await call('DELETE', '/v1/locks/api//x'), 400, 'INVALID_REQUEST', 'key');
    assertError(await call('DELETE', '/v1/locks/'), 400, 'INVALID_REQUEST', 'key');
  });

  test('GET /v1/locks lists holders and waiters with positions, by prefix, without lease ids', async () => {
    const { lease } = (await call('POST', '/v1/leases', { key: 'api/list/k', owner: 'holder', metadata: { message: 'm' } })).body;
    // inject() starts a request only when awaited: Promise.resolve sends it now.
    const waiting = Promise.resolve(app.inject({ method: 'POST', url: '/v1/leases', payload: { key: 'api/list/k', owner: 'waiter', waitMs: 5000 } }));
    let table = await call('GET', '/v1/locks?prefix=api%2Flist%2F');
    for (let i = 0; i < 500 && table.body['waiters'].length === 0; i++) {
      await sleep(10);
      table = await call('GET', '/v1/locks?prefix=api%2Flist%2F');
    }
    assert.deepEqual(table.body['locks'].map((l: { key: string; owner: string }) => `${l.key}:${l.owner}`), ['api/list/k:holder']);
    assert.deepEqual(table.body['waiters'].map((w: { owner: string; position: number }) => `${w.owner}:${w.position}`), ['waiter:1']);
    assert.ok(!JSON.stringify(table.body).includes(lease.id));
    assert.match(table.body['now'], ISO);
    await call('DELETE', `/v1/leases/${lease.id}`);
    assert.equal((await waiting).statusCode, 201);
  });

  test('GET /v1/history filters by key and owner, limits and pages', async () => {
    for (let i = 0; i < 3; i++) {
      const { lease } = (await call('POST', '/v1/leases', { key: 'api/hist', owner: 'h' })).body;
      await call('DELETE', `/v1/leases/${lease.id}`);
    }
    const all = (await call('GET', '/v1/history?key=api%2Fhist')).body['events'];
    assert.deepEqual(all.map((e: { type: string }) => e.type), ['released', 'acquired', 'released', 'acquired', 'released', 'acquired']);
    const two = (await call('GET', '/v1/history?owner=h&limit=2')).body['events'];
    assert.equal(two.length, 2);
    const older = (await call('GET', `/v1/history?owner=h&beforeId=${all[1].id}`)).body['events'];
    assert.deepEqual(older.map((e: { id: number }) => e.id), all.slice(2).map((e: { id: number }) => e.id));
    assertError(await call('GET', '/v1/history?limit=0'), 400, 'INVALID_REQUEST', 'limit');
    assertError(await call('GET', '/v1/history?limit=ten'), 400, 'INVALID_REQUEST', 'limit');
  });

  test('bad input is 400 INVALID_REQUEST naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ key: 'a', owner: 'o', color: 'red' }, 'color'],
      [{ owner: 'o' }, 'resources'],
      [{ key: 'a' }, 'owner'],
      [{ key: 'a', owner: 5 }, 'owner'],
      [{ key: 'a', owner: '' }, 'owner'],
      [{ key: 'a//b', owner: 'o' }, 'resources[0].key'],
      [{ key: 'a', resources: ['b'], owner: 'o' }, 'key'],
      [{ resources: ['a'], mode: 'shared', owner: 'o' }, 'mode'],
      [{ resources: [{ key: 'a', colour: 1 }], owner: 'o' }, 'resources[0].colour'],
      [{ resources: [{ key: 'a', mode: 'both' }], owner: 'o' }, 'resources[0].mode'],
      [{ key: 'a', owner: 'o', ttlMs: 5 }, 'ttlMs'],
      [{ key: 'a', owner: 'o', ttlMs: true }, 'ttlMs'],
      [{ key: 'a', owner: 'o', waitMs: -1 }, 'waitMs'],
      [{ key: 'a', owner: 'o', metadata: [] }, 'metadata'],
      [{ key: 'a', owner: 'o', id: 'short' }, 'id'],
      [[1, 2], 'body'],
      ['"a string"', 'body'],
    ];
    for (const [payload, field] of cases) {
      const reply = await call('POST', '/v1/leases', payload);
      assertError(reply, 400, 'INVALID_REQUEST', field);
    }
    const badJson = await app.inject({ method: 'POST', url: '/v1/leases', payload: '{"key": ', headers: { 'content-type': 'application/json' } });
    assert.equal(badJson.statusCode, 400);
    assert.equal(badJson.json().error.field, 'body');
    const huge = await app.inject({ method: 'POST', url: '/v1/leases', payload: JSON.stringify({ key: 'a', owner: 'o', metadata: { x: 'y'.repeat(300_000) } }), headers: { 'content-type': 'application/json' } });
    assert.equal(huge.statusCode, 413);
    assert.equal(huge.json().error.field, 'body');
    const form = await app.inject({ method: 'POST', url: '/v1/leases', payload: '{"key":"api/form","owner":"curl"}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assertError({ status: form.statusCode, headers: form.headers, body: form.json() }, 415, 'INVALID_REQUEST', 'content-type');
    assertError(await call('GET', '/v1/locks?prefix=a&extra=1'), 400, 'INVALID_REQUEST', 'extra');
    assertError(await call('GET', '/v1/nothing'), 404, 'NOT_FOUND');
  });

  test('/healthz, /readyz, /v1/info, /metrics and /openapi.json', async () => {
    assert.deepEqual((await call('GET', '/healthz')).body, { status: 'ok' });
    assert.deepEqual((await call('GET', '/readyz')).body, { status: 'ready', store: { kind: 'memory', durable: false } });
    const info = (await call('GET', '/v1/info')).body;
    assert.equal(info['maxWaitMs'], 900_000);
    assert.equal(info['tokens'], false);
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain/);
    for (const name of ['holdfast_leases_held', 'holdfast_waiters', 'holdfast_acquisitions_total{outcome="granted"}', 'holdfast_acquisitions_total{outcome="busy"}', 'holdfast_wait_seconds_bucket', 'holdfast_handoff_seconds_bucket', 'holdfast_store_errors_total', 'process_cpu_seconds_total']) {
      assert.ok(metrics.body.includes(name), `metrics lack ${name}`);
    }
    const doc = (await call('GET', '/openapi.json')).body;
    assert.equal(doc['openapi'], '3.1.0');
    for (const path of ['/v1/leases', '/v1/leases/{id}', '/v1/leases/{id}/renew', '/v1/owners/{owner}/leases', '/v1/locks', '/v1/locks/{key}', '/v1/events', '/v1/history', '/healthz', '/readyz', '/metrics']) {
      assert.ok(doc['paths'][path], `openapi lacks ${path}`);
    }
    const acquire = doc['paths']['/v1/leases'].post;
    assert.equal(acquire.requestBody.content['application/json'].schema.properties.owner.type, 'string');
    assert.ok(acquire.responses['201'] && acquire.responses['4XX']);
    assert.deepEqual(doc['paths']['/v1/locks/{key}'].delete.parameters.find((p: { in: string }) => p.in === 'path').name, 'key');
  });

  test('the dashboard is served with its script', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.body, /<script src="\/app.js"/);
    const script = await app.inject({ method: 'GET', url: '/app.js' });
    assert.equal(script.statusCode, 200);
    assert.match(String(script.headers['content-type']), /javascript/);
  });
});
