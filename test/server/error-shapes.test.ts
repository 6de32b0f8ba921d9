/**
 * Every error answer has the API's shape `{ error: { code: 'INVALID_REQUEST' | 'NOT_FOUND', message,
 * field, reason } }`, also those Fastify makes before a route runs (bad percent-encoding, an
 * overlong path segment, a body over the limit, bad JSON, an unknown route), and none changes
 * anything. A body over the limit sent chunked is read to its end and answered 413, not reset.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { testServer, type TestServer } from './helpers.js';

let server: TestServer;

interface Answer {
  status: number;
  body: { error?: { code?: string; message?: string; field?: string } } | null;
}

/** A request over a real socket; the body written in chunks of 64 KiB (chunked unless a length is given). */
function send(method: string, path: string, body: Buffer | string | null, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${server.url}${path}`, { method, agent: false, headers });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? null : JSON.parse(text) }));
    });
    if (body === null) return req.end();
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    let offset = 0;
    const write = (): void => {
      while (offset < data.length) {
        const chunk = data.subarray(offset, offset + 65_536);
        offset += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

function assertShape(answer: Answer, status: number, code: string, what: string): void {
  assert.equal(answer.status, status, `${what}: ${JSON.stringify(answer.body)}`);
  assert.equal(answer.body?.error?.code, code, `${what}: ${JSON.stringify(answer.body)}`);
  assert.equal(typeof answer.body?.error?.message, 'string', what);
  assert.deepEqual(Object.keys(answer.body ?? {}), ['error'], `${what}: nothing but { error }`);
}

describe('error answers', () => {
  before(async () => {
    server = await testServer({ bodyLimit: 64 * 1024 });
  });
  after(() => server.close());

  test('a bad percent-encoding or an overlong segment is INVALID_REQUEST on every route', async () => {
    for (const [method, path] of [
      ['GET', '/v1/leases/%FF%FE'], ['DELETE', '/v1/leases/%FF%FE'], ['POST', '/v1/tickets/%FF%FE/poll'],
      ['DELETE', '/v1/locks/%E0%A4%A'], ['DELETE', '/v1/owners/%FF/leases'], ['GET', '/%C0'],
    ] as const) {
      const answer = await send(method, path, null);
      assertShape(answer, 400, 'INVALID_REQUEST', `${method} ${path}`);
      assert.equal(answer.body?.error?.field, 'url');
    }
    assertShape(await send('DELETE', `/v1/owners/${'o'.repeat(5000)}/leases`, null), 414, 'INVALID_REQUEST', 'an overlong segment');
  });

  test('a body over the limit is answered 413 (chunked or with its length), and nothing is granted', async () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 'a');
    const chunked = await send('POST', '/v1/leases', big, { 'content-type': 'application/json' });
    assertShape(chunked, 413, 'INVALID_REQUEST', '10 MB chunked');
    assert.equal(chunked.body?.error?.field, 'body');
    const json = JSON.stringify({ key: 'shape/big', owner: 'o', metadata: { pad: 'x'.repeat(100_000) } });
    assertShape(await send('POST', '/v1/leases', json, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)) }), 413, 'INVALID_REQUEST', 'with content-length');
    assert.deepEqual(await server.store.list(), { locks: [], waiters: [] });
    // The server still answers on new connections.
    assert.equal((await send('GET', '/healthz', null)).status, 200);
  });

  test('bad JSON, an empty JSON body and an unknown route have the shape too', async () => {
    assertShape(await send('POST', '/v1/leases', '{"key":', { 'content-type': 'application/json' }), 400, 'INVALID_REQUEST', 'bad JSON');
    assertShape(await send('POST', '/v1/leases', '', { 'content-type': 'application/json', 'content-length': '0' }), 400, 'INVALID_REQUEST', 'empty JSON');
    assertShape(await send('GET', '/v1/nothing-here', null), 404, 'NOT_FOUND', 'unknown route');
    assertShape(await send('PATCH', '/v1/leases', null), 404, 'NOT_FOUND', 'unknown method');
    assert.deepEqual(await server.store.list(), { locks: [], waiters: [] });
  });
});
