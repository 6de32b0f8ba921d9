/**
 * Property: thousands of random and malformed requests (random JSON, wrong types, huge strings,
 * odd keys, unknown fields, invalid ids, random paths, methods and content types) never get a
 * 5xx, always get a well-formed answer, leave the server up, and when rejected change nothing
 * (`list()` and `history()` are the same before and after).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { newLeaseId, validateRequest } from '../../src/index.js';
import { testServer, type TestServer } from './helpers.js';

const SEEDS = ['seed/a', 'seed/b'];
const FIELDS = ['owner', 'resources', 'key', 'mode', 'limit', 'ttlMs', 'waitMs', 'requestId', 'metadata', 'lockDelayMs', 'id', 'queue', 'waiterTtlMs'];
const KEYS = ['seed/a', 'seed/b', 'seed', 'x', 'a//b', '/a', 'a/', '', 'é'.repeat(300), 'k\u0000', 'seed/a/deeper', '%2F', '..', 'seed%2Fa'];

const oddString = fc.oneof(
  fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom(...KEYS), fc.constant('x'.repeat(70_000)),
  fc.constantFrom('30s', '5m', '-1', '1e309', 'NaN', '7d', '8d', '0', 'shared', 'exclusive', '__proto__', 'constructor'),
);
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  oddString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.jsonValue(),
  fc.array(fc.oneof(oddString, fc.record({ key: oddString, mode: oddString, limit: fc.oneof(fc.integer(), fc.constant(null)) }, { requiredKeys: [] }))),
);
/** Bodies near the real request: known fields with odd values, sometimes an unknown field. */
const nearRequest = fc
  .dictionary(fc.constantFrom(...FIELDS, 'colour', '__proto__', 'constructor', ''), oddValue, { maxKeys: 8 })
  .map((body) => JSON.stringify(body));
/** A valid request with a few fields replaced, removed or added: some still valid, most not. */
const mutatedRequest = fc
  .tuple(
    fc.record({ owner: fc.constantFrom('fc', 'seed'), key: fc.constantFrom('fc/k', 'seed/a', 'fc/k/deeper', 'seed'), ttlMs: fc.constantFrom(1000, '5s') }),
    fc.array(fc.tuple(fc.constantFrom(...FIELDS, 'colour'), fc.option(oddValue, { nil: undefined })), { minLength: 0, maxLength: 3 }),
  )
  .map(([base, changes]) => {
    const request: Record<string, unknown> = { ...base };
    for (const [field, value] of changes) {
      if (value === undefined) delete request[field];
      else request[field] = value;
    }
    return JSON.stringify(request);
  });
const body = fc.oneof(
  mutatedRequest,
  nearRequest,
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom('{', '{"owner":', '[', 'null', '""', '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {}}}', 'x'.repeat(300_000)),
);

const id = fc.oneof(fc.constant(newLeaseId()), fc.string({ maxLength: 80 }), fc.constantFrom('A'.repeat(22), 'short', '%00', '..%2F..'));
const segment = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom(...KEYS)).map((s) => encodeURIComponent(s));
const query = fc.dictionary(fc.constantFrom('key', 'owner', 'prefix', 'limit', 'beforeId', 'by', 'x', ''), oddString.map((s) => s.slice(0, 600)), { maxKeys: 4 })
  .map((q) => (Object.keys(q).length === 0 ? '' : `?${new URLSearchParams(q as Record<string, string>).toString()}`));
const path = fc.oneof(
  fc.constant('/v1/leases'),
  id.map((i) => `/v1/leases/${encodeURIComponent(i)}`),
  id.map((i) => `/v1/leases/${encodeURIComponent(i)}/renew`),
  id.map((i) => `/v1/tickets/${encodeURIComponent(i)}`),
  id.map((i) => `/v1/tickets/${encodeURIComponent(i)}/poll`),
  segment.map((s) => `/v1/owners/${s}/leases`),
  fc.constantFrom('/v1/locks', '/v1/history', '/v1/info', '/healthz', '/readyz', '/metrics', '/openapi.json', '/nothing', '/v1', '/v1/'),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/v1/locks/${parts.join('/')}`),
  fc.string({ maxLength: 40 }).map((s) => `/${encodeURIComponent(s)}`),
);
const method = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD') as fc.Arbitrary<InjectOptions['method']>;
const contentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined);

describe('bad input never breaks the server or changes state', () => {
  let server: TestServer;
  const seedFences = new Set<number>();
  /** Long leases for the random requests to run into (again, when a random request ended one). */
  const seed = async (): Promise<void> => {
    for (const key of SEEDS) {
      const seeded = await server.store.acquire(validateRequest({ owner: 'seed', resources: [key], ttlMs: 3_600_000 }).request, { waitMs: 0, waiterTtlMs: 5000 });
      if (seeded.status === 'granted') seedFences.add(seeded.lease.fence);
    }
  };
  before(async () => {
    // Waits are cut short, so a valid waiting request cannot hold a run up.
    server = await testServer({ listen: true, maxWaitMs: 30 });
    await seed();
  });
  after(() => server.close());

  /** The store's state, as list() and history() show it. */
  const snapshot = async (): Promise<string> => JSON.stringify([await server.store.list(), await server.store.history({ limit: 1000 })]);

  /**
   * After an accepted request: cancels the ticket it queued (202), ends every lease requests took
   * (so none expires later), keeps the seeds, and returns the new state.
   */
  const reset = async (answer: { statusCode: number; body: string }): Promise<string> => {
    if (answer.statusCode === 202) {
      const { ticket } = JSON.parse(answer.body) as { ticket: string };
      await server.app.inject({ method: 'DELETE', url: `/v1/tickets/${ticket}` });
    }
    // A lease of a short TTL may have run out already: the sweep records it now, not later.
    await server.store.sweep();
    for (const lock of (await server.store.list()).locks) {
      // (A random request may have released a seed: a seed key can hold another lease by now.)
      if (!seedFences.has(lock.fence)) await server.store.forceRelease(lock.key, { by: 'test' });
    }
    return snapshot();
  };

  test('random requests: no 5xx, well-formed errors, and a rejected request changes nothing', async () => {
    let state = await snapshot();
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(method, path, query, fc.option(body, { nil: undefined }), contentType, async (m, p, q, b, type) => {
        if (p === '/v1/events') return; // a stream, never answered in full
        const res = await server.app.inject({
          method: m, url: `${p}${q}`,
          ...(b === undefined || m === 'GET' || m === 'HEAD' ? {} : { payload: b }),
          headers: type === undefined ? {} : { 'content-type': type },
        });
        assert.ok(res.statusCode < 500, `${m} ${p}${q} ${String(b).slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`);
        if (res.statusCode >= 400 && m !== 'HEAD') {
          const error = (res.json() as { error?: { code?: unknown; message?: unknown } }).error;
          assert.equal(typeof error?.code, 'string', res.body.slice(0, 200));
          assert.equal(typeof error?.message, 'string');
          assert.equal(await snapshot(), state, `${m} ${p}${q} was rejected (${res.statusCode}) but changed the store`);
        } else {
          accepted++;
          state = await reset(res);
        }
      }),
      { numRuns: 3000 },
    );
    assert.ok(accepted > 0, 'no request was accepted at all: the generators miss the API');
    assert.equal((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });

  test('acquire bodies built from the request fields: 201 or a 4xx naming a field, nothing changed when refused', async () => {
    // The previous test's random requests may have released or forced a seed: the busy answers need both.
    await seed();
    let state = await snapshot();
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutatedRequest, nearRequest), async (payload) => {
        const res = await server.app.inject({ method: 'POST', url: '/v1/leases', payload, headers: { 'content-type': 'application/json' } });
        statuses.add(res.statusCode);
        assert.ok([201, 202, 400, 409, 413].includes(res.statusCode), `${payload.slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`);
        if (res.statusCode === 400 || res.statusCode === 413) {
          const error = (res.json() as { error: { code: string; field: unknown } }).error;
          assert.equal(error.code, 'INVALID_REQUEST');
          assert.equal(typeof error.field, 'string');
        }
        if (res.statusCode >= 400) assert.equal(await snapshot(), state);
        else state = await reset(res);
      }),
      { numRuns: 2000 },
    );
    for (const status of [201, 400, 409]) assert.ok(statuses.has(status), `no ${status} among the answers: the generator misses a case`);
  });

  test('garbage on the socket gets an error and the server keeps answering', async () => {
    const port = (server.app.server.address() as { port: number }).port;
    for (const garbage of ['NOT HTTP AT ALL\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', '\u0000\u0001\u0002', `GET /${'a'.repeat(100_000)} HTTP/1.1\r\n\r\n`]) {
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.end(garbage));
        let text = '';
        socket.on('data', (d) => (text += d.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
      });
      assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d/.test(answer), answer.slice(0, 100));
    }
    const res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200);
  });
});
