/**
 * What the server gives the dashboard: its modules under /ui/ (scripts and style sheets of web/ui,
 * nothing else, with the dashboard's CSP), and /v1/whoami (the token's name and admin right, by
 * which the page enables admin actions).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { testServer, type TestServer } from './helpers.js';

const ADMIN = 'dashboard-admin-token-0123';
const VIEWER = 'dashboard-viewer-token-0123';
const WEB_UI = new URL('../../../web/ui/', import.meta.url);

describe('dashboard files and whoami', () => {
  let open: TestServer;
  let guarded: TestServer;
  before(async () => {
    open = await testServer({ listen: false });
    guarded = await testServer({
      listen: false,
      tokens: [{ name: 'ops', token: ADMIN, admin: true }, { name: 'viewer', token: VIEWER, owners: 'viewer-*' }],
    });
  });
  after(async () => {
    await open.close();
    await guarded.close();
  });

  test('every module of web/ui is served with its type and the CSP; other names are 404 and change nothing', async () => {
    const names = readdirSync(WEB_UI);
    assert.ok(!names.includes('app.js') && names.some((n) => n.endsWith('.css')) && names.filter((n) => n.endsWith('.js')).length >= 5, names.join());
    for (const name of names) {
      const res = await open.app.inject({ method: 'GET', url: `/ui/${name}` });
      assert.equal(res.statusCode, 200, name);
      assert.match(String(res.headers['content-type']), name.endsWith('.css') ? /^text\/css/ : /^text\/javascript/, name);
      assert.match(String(res.headers['content-security-policy']), /default-src 'self'/);
    }
    for (const url of ['/ui/missing.js', '/ui/..%2Fapp.js', '/ui/..%2F..%2Fpackage.json', '/ui/App.js', '/ui/style.css.map', '/ui/.hidden.js']) {
      const res = await open.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 404, url);
      assert.equal(res.json().error.code, 'NOT_FOUND', url);
    }
  });

  test('the page imports only modules the server serves', async () => {
    const app = (await open.app.inject({ method: 'GET', url: '/app.js' })).body;
    const imports = [...app.matchAll(/from '\.\/ui\/([^']+)'/g)].map((m) => m[1]!);
    assert.ok(imports.length >= 5);
    for (const name of imports) assert.equal((await open.app.inject({ method: 'GET', url: `/ui/${name}` })).statusCode, 200, name);
    const page = (await open.app.inject({ method: 'GET', url: '/' })).body;
    assert.match(page, /<link rel="stylesheet" href="\/ui\/style.css">/);
  });

  test('whoami: the token name and admin right; anonymous admin without tokens; 401 without a token', async () => {
    assert.deepEqual((await open.app.inject({ method: 'GET', url: '/v1/whoami' })).json(), { name: 'anonymous', admin: true, tokens: false });
    const as = async (token: string | null) => guarded.app.inject({ method: 'GET', url: '/v1/whoami', headers: token ? { authorization: `Bearer ${token}` } : {} });
    assert.deepEqual((await as(ADMIN)).json(), { name: 'ops', admin: true, tokens: true });
    assert.deepEqual((await as(VIEWER)).json(), { name: 'viewer', admin: false, tokens: true });
    const none = await as(null);
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().error.code, 'UNAUTHORIZED');
    assert.equal((await as('wrong-token-000000000000')).statusCode, 401);
  });
});
