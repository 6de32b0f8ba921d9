/**
 * Unicode keys: the NFC spelling of a text is the key; the NFD spelling of the same text is
 * refused with 400 naming the field (not taken as a second key that never conflicts), on acquire,
 * force-release, history and release by owner, and nothing changes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { testServer, type TestServer } from './helpers.js';

const NFC = 'caf\u00e9/men\u00fc';
const NFD = 'cafe\u0301/menu\u0308';

describe('unicode keys', () => {
  let server: TestServer;
  before(async () => {
    server = await testServer({ listen: false });
  });
  after(() => server.close());

  test('NFC is accepted; NFD of the same text is refused, naming the field, and changes nothing', async () => {
    assert.notEqual(NFC, NFD);
    assert.equal(NFD.normalize('NFC'), NFC);
    const held = await server.app.inject({ method: 'POST', url: '/v1/leases', payload: { key: NFC, owner: 'a' } });
    assert.equal(held.statusCode, 201);
    assert.equal(held.json().lease.resources[0].key, NFC);
    const nfd = await server.app.inject({ method: 'POST', url: '/v1/leases', payload: { key: NFD, owner: 'b' } });
    assert.equal(nfd.statusCode, 400);
    assert.equal(nfd.json().error.code, 'INVALID_REQUEST');
    assert.equal(nfd.json().error.field, 'resources[0].key');
    assert.match(nfd.json().error.message, /normalization form C/);
    for (const url of [`/v1/locks/${encodeURIComponent(NFD)}`, `/v1/owners/a/leases?key=${encodeURIComponent(NFD)}`]) {
      const refused = await server.app.inject({ method: 'DELETE', url });
      assert.equal(refused.statusCode, 400, url);
      assert.equal(refused.json().error.field, 'key');
    }
    assert.equal((await server.app.inject({ method: 'GET', url: `/v1/history?key=${encodeURIComponent(NFD)}` })).statusCode, 400);
    const table = await server.store.list();
    assert.deepEqual(table.locks.map((l) => `${l.key} ${l.owner}`), [`${NFC} a`]);
    // The NFC spelling conflicts with itself as any key does.
    const busy = await server.app.inject({ method: 'POST', url: '/v1/leases', payload: { key: NFC, owner: 'b' } });
    assert.equal(busy.statusCode, 409);
  });
});
