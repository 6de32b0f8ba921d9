/**
 * Bearer tokens: 401 without a valid token, 403 for owners outside a token's pattern (also on
 * renew and release by id, whose owner is read first) and for admin operations of non-admin
 * tokens; nothing changes on a refused request; tokens and lease ids never reach the logs; no
 * listening beyond loopback without tokens.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HoldfastError, openLocks, startServer, type TokenConfig } from '../../src/index.js';
import { LogLines, testServer, type TestServer } from './helpers.js';

const ADMIN = 'admin-secret-0123456789abcdef';
const CI = 'ci-secret-0123456789abcdef';
const DEPLOY = 'deploy-secret-0123456789abcdef';
const TOKENS: TokenConfig[] = [
  { name: 'ops', token: ADMIN, owners: '*', admin: true },
  { name: 'ci', token: CI, owners: 'ci-*' },
  { name: 'deploy', token: DEPLOY, owners: '/^deploy-(a|b)$/' },
];

let server: TestServer;
const logs = new LogLines();

async function call(token: string | null, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: Record<string, unknown>) {
  const res = await server.app.inject({
    method, url, ...(payload ? { payload } : {}), headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
  const json = String(res.headers['content-type']).startsWith('application/json');
  return { status: res.statusCode, headers: res.headers, body: (json ? res.json() : {}) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('auth', () => {
  before(async () => {
    // debug: each request's own lines (with its URL) are written at debug.
    server = await testServer({ tokens: TOKENS, listen: true, logLevel: 'debug', logStream: logs });
  });
  after(() => server.close());

  test('a missing or wrong token is 401 with WWW-Authenticate; health and the dashboard stay open', async () => {
    const missing = await call(null, 'GET', '/v1/locks');
    assert.equal(missing.status, 401);
    assert.equal(missing.body['error'].code, 'UNAUTHORIZED');
    assert.match(String(missing.headers['www-authenticate']), /^Bearer/);
    assert.equal((await call('not-a-token-at-all-0000', 'GET', '/v1/locks')).status, 401);
    assert.equal((await call(`${CI}x`, 'GET', '/v1/locks')).status, 401);
    const basic = await server.app.inject({ method: 'GET', url: '/v1/locks', headers: { authorization: `Basic ${CI}` } });
    assert.equal(basic.statusCode, 401);
    assert.equal((await call(null, 'POST', '/v1/leases', { key: 'auth/x', owner: 'ci-1' })).status, 401);
    for (const path of ['/healthz', '/readyz', '/', '/openapi.json', '/v1/info']) assert.equal((await call(null, 'GET', path)).status, 200, path);
    assert.deepEqual((await server.store.list()).locks, []);
  });

  test('a token acquires only for owners matching its pattern (glob or /regex/)', async () => {
    assert.equal((await call(CI, 'POST', '/v1/leases', { key: 'auth/ci', owner: 'ci-build-7' })).status, 201);
    const refused = await call(CI, 'POST', '/v1/leases', { key: 'auth/prod', owner: 'prod-deployer' });
    assert.equal(refused.status, 403);
    assert.equal(refused.body['error'].code, 'FORBIDDEN');
    assert.match(refused.body['error'].message, /"ci" may not acquire for owner "prod-deployer"/);
    assert.equal((await call(DEPLOY, 'POST', '/v1/leases', { key: 'auth/d', owner: 'deploy-a' })).status, 201);
    assert.equal((await call(DEPLOY, 'POST', '/v1/leases', { key: 'auth/d2', owner: 'deploy-c' })).status, 403);
    assert.deepEqual((await server.store.list({ prefix: 'auth/' })).locks.map((l) => l.owner).sort(), ['ci-build-7', 'deploy-a']);
  });

  test('read, renew and release by id check the lease owner; admin may release any lease', async () => {
    const { lease } = (await call(ADMIN, 'POST', '/v1/leases', { key: 'auth/by-id', owner: 'prod' })).body;
    assert.equal((await call(CI, 'POST', `/v1/leases/${lease.id}/renew`)).status, 403);
    assert.equal((await call(CI, 'DELETE', `/v1/leases/${lease.id}`)).status, 403);
    assert.ok(await server.store.get(lease.id), 'a refused release changed nothing');
    assert.equal((await call(CI, 'GET', `/v1/leases/${lease.id}`)).status, 403, 'reading by id needs a token for its owner');
    assert.deepEqual((await call(ADMIN, 'DELETE', `/v1/leases/${lease.id}`)).body, { released: true });
  });

  test('release by owner needs the owner in the pattern or admin; force-release needs admin', async () => {
    await call(ADMIN, 'POST', '/v1/leases', { key: 'auth/own', owner: 'prod' });
    await call(CI, 'POST', '/v1/leases', { key: 'auth/own2', owner: 'ci-9' });
    assert.equal((await call(CI, 'DELETE', '/v1/owners/prod/leases')).status, 403);
    assert.deepEqual((await call(CI, 'DELETE', '/v1/owners/ci-9/leases')).body, { released: 1 });
    const forced = await call(CI, 'DELETE', '/v1/locks/auth%2Fown');
    assert.equal(forced.status, 403);
    assert.match(forced.body['error'].message, /Only an admin token may force-release/);
    assert.deepEqual((await call(ADMIN, 'DELETE', '/v1/locks/auth%2Fown?by=alice')).body, { released: 1 });
    const [event] = (await call(ADMIN, 'GET', '/v1/history?key=auth%2Fown&limit=1')).body['events'];
    assert.equal(event.type, 'forced');
    assert.equal(event.by, 'ops:alice', 'history names the token and the person');
  });

  test('neither tokens nor lease ids reach the logs; the authorization header is never logged', async () => {
    const { lease } = (await call(CI, 'POST', '/v1/leases', { key: 'auth/log', owner: 'ci-log' })).body;
    await call(CI, 'POST', `/v1/leases/${lease.id}/renew`);
    await call(CI, 'DELETE', `/v1/leases/${lease.id}`);
    await call('wrong-token-0123456789', 'GET', '/v1/locks');
    const text = logs.text;
    assert.ok(text.includes('"reqId"'), 'logs carry request ids');
    assert.ok(text.includes(`/v1/leases/${lease.id.slice(0, 6)}…`), 'logged URLs show a short prefix of the id');
    for (const secret of [ADMIN, CI, DEPLOY, 'wrong-token-0123456789', lease.id]) assert.ok(!text.includes(secret), `the logs contain ${secret.slice(0, 8)}…`);
  });

  test('the http store sends its token; a wrong one is UNAUTHORIZED', async () => {
    const locks = await openLocks(server.url, { owner: 'ci-lib', storeOptions: { token: CI } });
    const lease = await locks.acquire('auth/lib');
    assert.equal(await lease.release(), true);
    await assert.rejects(locks.acquire('auth/lib', { owner: 'prod' }), (e: unknown) => e instanceof HoldfastError && e.code === 'FORBIDDEN');
    await locks.close();
    const anonymous = await openLocks(server.url, { owner: 'ci-lib' });
    await assert.rejects(anonymous.list(), (e: unknown) => e instanceof HoldfastError && e.code === 'UNAUTHORIZED' && e.status === 401);
    await anonymous.close();
  });
});

describe('tokens file and listening', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-auth-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('without tokens the server refuses a non-loopback address', async () => {
    await assert.rejects(
      startServer({ store: 'memory:', host: '0.0.0.0', port: 0, logLevel: 'silent', signals: [] }),
      (e: unknown) => e instanceof HoldfastError && e.code === 'INVALID_REQUEST' && /refusing to listen on 0\.0\.0\.0 without tokens/.test(e.message),
    );
  });

  test('with a tokens file it listens anywhere; bad files are refused with the reason', async () => {
    const file = join(dir, 'tokens.json');
    writeFileSync(file, JSON.stringify(TOKENS));
    const running = await startServer({ store: 'memory:', host: '0.0.0.0', port: 0, tokens: file, logLevel: 'silent', signals: [] });
    const port = (running.app.server.address() as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/v1/locks`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.status, 200);
    await running.close();
    await running.closed;

    const bad: [unknown, RegExp][] = [
      [[], /non-empty array/],
      [[{ name: 'x', token: 'short' }], /tokens\[0\]\.token/],
      [[{ name: 'x', token: CI }, { name: 'x', token: ADMIN }], /duplicate name/],
      [[{ name: 'x', token: CI, owners: '/(/' }], /regular expression/],
      [[{ name: 'x', token: CI, role: 'admin' }], /tokens\[0\]\.role/],
    ];
    for (const [content, reason] of bad) {
      writeFileSync(file, JSON.stringify(content));
      await assert.rejects(startServer({ store: 'memory:', port: 0, tokens: file, logLevel: 'silent', signals: [] }), reason);
    }
    writeFileSync(file, '{ not json');
    await assert.rejects(startServer({ store: 'memory:', port: 0, tokens: file, logLevel: 'silent', signals: [] }), /not valid JSON/);
    await assert.rejects(startServer({ store: 'memory:', port: 0, tokens: join(dir, 'missing.json'), logLevel: 'silent', signals: [] }), /ENOENT/);
  });
});
