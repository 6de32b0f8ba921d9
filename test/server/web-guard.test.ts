/**
 * A web page can't use a local server: a cross-site "simple" request (text/plain, no preflight)
 * and a foreign `Origin` are refused, and without tokens a foreign `Host` (DNS rebinding) is
 * refused too, before anything changes or is read. The server's own pages (the dashboard), the
 * http client and origins listed in `allowedOrigins` keep working.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { buildServer, HoldfastError, openLocks } from '../../src/index.js';
import { testServer, type TestServer } from './helpers.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, any> | null; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A raw request, with whatever Host and Origin an attacker's page would make the browser send. */
function send(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method, agent: false, headers });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        const json = String(res.headers['content-type']).startsWith('application/json');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: json && text !== '' ? JSON.parse(text) : null });
      });
    });
    req.end(body);
  });
}

const LEASE = JSON.stringify({ key: 'web/lb', owner: 'page', ttlMs: 604_800_000 });

describe('web pages', () => {
  let server: TestServer;
  let host: string;
  before(async () => {
    server = await testServer({ allowedOrigins: ['https://ops.example.com'] });
    host = new URL(server.url).host;
  });
  after(() => server.close());

  test('a cross-site simple request (text/plain, foreign Origin) is refused and grants nothing', async () => {
    const crossSite = await send(server.url, 'POST', '/v1/leases', { origin: 'http://evil.example', 'content-type': 'text/plain' }, LEASE);
    assert.equal(crossSite.status, 403);
    assert.equal(crossSite.body?.['error'].code, 'FORBIDDEN');
    assert.match(crossSite.body?.['error'].message, /web page "http:\/\/evil\.example"/);
    assert.equal(crossSite.headers['access-control-allow-origin'], undefined);
    // Without an Origin (an old browser, a form), the content type alone is refused.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const simple = await send(server.url, 'POST', '/v1/leases', { 'content-type': type }, LEASE);
      assert.equal(simple.status, 415, type);
      assert.equal(simple.body?.['error'].code, 'INVALID_REQUEST');
      assert.equal(simple.body?.['error'].field, 'content-type');
    }
    assert.equal((await send(server.url, 'POST', '/v1/leases', {}, LEASE)).status, 415, 'a body without a content type');
    // A foreign origin is refused on reads and on body-less changes too, and Origin: null.
    assert.equal((await send(server.url, 'GET', '/v1/locks', { origin: 'http://evil.example' })).status, 403);
    assert.equal((await send(server.url, 'DELETE', '/v1/owners/page/leases', { origin: 'http://evil.example' })).status, 403);
    assert.equal((await send(server.url, 'POST', '/v1/leases', { origin: 'null', 'content-type': 'application/json' }, LEASE)).status, 403);
    assert.deepEqual(await server.store.list(), { locks: [], waiters: [] });
  });

  test('without tokens a foreign Host (DNS rebinding) is refused: the lock table is not read', async () => {
    await server.store.acquire({ id: 'web-secret-lease-0001', owner: 'secret-owner', resources: [{ key: 'web/held', mode: 'exclusive', limit: null }], ttlMs: 60_000, requestId: null, metadata: {}, lockDelayMs: 0 }, { waitMs: 0, waiterTtlMs: 5000 });
    const port = new URL(server.url).port;
    for (const [method, path] of [['GET', '/v1/locks'], ['GET', '/v1/history'], ['GET', '/v1/events'], ['GET', '/'], ['DELETE', '/v1/locks/web%2Fheld']] as const) {
      const rebound = await send(server.url, method, path, { host: `evil.example:${port}` });
      assert.equal(rebound.status, 403, `${method} ${path}`);
      assert.equal(rebound.body?.['error'].code, 'FORBIDDEN');
      assert.doesNotMatch(JSON.stringify(rebound.body), /secret-owner/);
    }
    // The page's own origin matches the rebound Host: the Host check is what refuses it.
    const sameRebound = await send(server.url, 'POST', '/v1/leases', { host: `evil.example:${port}`, origin: `http://evil.example:${port}`, 'content-type': 'application/json' }, LEASE);
    assert.equal(sameRebound.status, 403);
    assert.equal((await server.store.list({ prefix: 'web/lb' })).locks.length, 0);
    for (const name of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `127.1.2.3:${port}`, 'ops.example.com']) {
      assert.equal((await send(server.url, 'GET', '/v1/locks', { host: name })).status, 200, name);
    }
    await server.store.release('web-secret-lease-0001');
  });

  test('the dashboard, its own origin, the http client and allowed origins keep working', async () => {
    for (const path of ['/', '/app.js']) assert.equal((await send(server.url, 'GET', path, { host })).status, 200, path);
    const own = await send(server.url, 'POST', '/v1/leases', { origin: `http://${host}`, 'content-type': 'application/json; charset=utf-8' }, LEASE);
    assert.equal(own.status, 201, JSON.stringify(own.body));
    assert.equal((await send(server.url, 'DELETE', `/v1/leases/${own.body?.['lease'].id}`, { origin: `http://${host}` })).status, 200);
    // An allowed origin gets CORS answers, its preflight included.
    const preflight = await send(server.url, 'OPTIONS', '/v1/leases', { origin: 'https://ops.example.com', 'access-control-request-method': 'POST' });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://ops.example.com');
    assert.match(String(preflight.headers['access-control-allow-headers']), /content-type/);
    const allowed = await send(server.url, 'POST', '/v1/leases', { origin: 'https://ops.example.com', 'content-type': 'application/json' }, LEASE);
    assert.equal(allowed.status, 201);
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://ops.example.com');
    assert.equal((await server.store.releaseOwner('page', { by: 'test' })), 1);
    // The library over http: JSON bodies, body-less renews and releases.
    const locks = await openLocks(server.url, { owner: 'web-client' });
    const lease = await locks.acquire('web/client', { ttlMs: 5000 });
    await lease.renew();
    assert.equal(await lease.release(), true);
    await locks.close();
  });

  test('with tokens any Host is served, but a foreign Origin is still refused', async () => {
    const token = 'web-token-0123456789abcdef';
    const app = await buildServer({ store: 'memory:', logLevel: 'silent', tokens: [{ name: 'ops', token, admin: true }] });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      const auth = { authorization: `Bearer ${token}` };
      assert.equal((await send(url, 'GET', '/v1/locks', { ...auth, host: 'holdfast.internal.example' })).status, 200);
      assert.equal((await send(url, 'GET', '/v1/locks', { ...auth, origin: 'http://evil.example' })).status, 403);
    } finally {
      await app.close();
    }
  });

  test('allowedOrigins is validated, naming the entry', async () => {
    for (const bad of [['evil.example'], ['https://a.example/path'], ['ftp://a.example'], [7]]) {
      await assert.rejects(buildServer({ store: 'memory:', logLevel: 'silent', allowedOrigins: bad as string[] }),
        (e: unknown) => e instanceof HoldfastError && e.code === 'INVALID_REQUEST' && /allowedOrigins\[0\]/.test(e.message));
    }
  });
});
