/**
 * The per-request log and request ids (src/server/request-log.ts): at the default `info` level a
 * successful acquire+release writes no line; a line a route writes at an enabled level still
 * carries the request's `reqId`; at `debug` each request's own lines appear; ids are unique per
 * request, a client's valid `x-request-id` is kept and an invalid one replaced.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LogLines, testServer, type TestServer } from './helpers.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

describe('request log', () => {
  let server: TestServer;
  const logs = new LogLines();
  before(async () => {
    server = await testServer({ listen: false, logLevel: 'info', logStream: logs });
  });
  after(() => server.close());

  test('a successful acquire and release write no line at info', async () => {
    const before = logs.lines.length;
    const acquired = await server.app.inject({ method: 'POST', url: '/v1/leases', headers: JSON_HEADERS, payload: { key: 'log/a', owner: 'w1' } });
    assert.equal(acquired.statusCode, 201);
    const id = (acquired.json() as { lease: { id: string } }).lease.id;
    const released = await server.app.inject({ method: 'DELETE', url: `/v1/leases/${id}` });
    assert.deepEqual(released.json(), { released: true });
    assert.deepEqual(logs.lines.slice(before), []);
  });

  test('a line written at info carries the request id it was answered with', async () => {
    await server.app.inject({ method: 'POST', url: '/v1/leases', headers: JSON_HEADERS, payload: { key: 'log/b', owner: 'w2' } });
    const before = logs.lines.length;
    const answer = await server.app.inject({ method: 'DELETE', url: '/v1/owners/w2/leases', headers: { 'x-request-id': 'client-given.1' } });
    assert.deepEqual(answer.json(), { released: 1 });
    assert.equal(answer.headers['x-request-id'], 'client-given.1');
    const lines = logs.lines.slice(before).map((line) => JSON.parse(line) as { reqId?: string; msg?: string });
    const line = lines.find((l) => l.msg === 'released by owner');
    assert.ok(line, `expected a 'released by owner' line, got ${JSON.stringify(lines)}`);
    assert.equal(line.reqId, 'client-given.1');
  });

  test('request ids are unique; an invalid x-request-id is replaced', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const answer = await server.app.inject({ method: 'GET', url: '/v1/info', headers: i === 0 ? { 'x-request-id': 'bad id with spaces' } : {} });
      const id = String(answer.headers['x-request-id']);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-z]+$/);
      ids.add(id);
    }
    assert.equal(ids.size, 20);
  });
});

describe('request log at debug', () => {
  let server: TestServer;
  const logs = new LogLines();
  before(async () => {
    server = await testServer({ listen: false, logLevel: 'debug', logStream: logs });
  });
  after(() => server.close());

  test("each request's own lines are written, with its id", async () => {
    const answer = await server.app.inject({ method: 'GET', url: '/v1/info' });
    const id = String(answer.headers['x-request-id']);
    const mine = logs.lines.map((line) => JSON.parse(line) as { reqId?: string; msg?: string }).filter((l) => l.reqId === id);
    assert.deepEqual(mine.map((l) => l.msg), ['incoming request', 'request completed']);
  });
});
