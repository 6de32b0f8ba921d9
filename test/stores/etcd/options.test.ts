/** The etcd store's URL and options: bad input is refused naming the field, before any connection. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStore } from '../../../src/engine/open.js';
import { HoldfastError } from '../../../src/model/errors.js';
import { parseEtcdUrl, resolveEtcdOptions } from '../../../src/stores/etcd/options.js';

const invalid = (field: string) => (error: unknown): boolean => {
  assert.ok(error instanceof HoldfastError, String(error));
  assert.equal(error.code, 'INVALID_REQUEST');
  assert.match(error.message, new RegExp(field.replace('.', '\\.')));
  return true;
};

test('etcd URLs name members and an optional prefix', () => {
  assert.deepEqual(parseEtcdUrl('etcd://127.0.0.1:2379'), { endpoints: ['127.0.0.1:2379'], prefix: undefined });
  assert.deepEqual(parseEtcdUrl('etcd://a:1,b:2,c:3/team-a'), { endpoints: ['a:1', 'b:2', 'c:3'], prefix: 'team-a/' });
  assert.deepEqual(parseEtcdUrl('etcd://a:1/x/y/'), { endpoints: ['a:1'], prefix: 'x/y/' });
  assert.equal(resolveEtcdOptions('etcd://a:1/p', { prefix: 'q/' }).prefix, 'q/');
  assert.equal(resolveEtcdOptions('etcd://a:1').prefix, 'holdfast/');
});

test('bad etcd URLs and options are INVALID_REQUEST naming the field', async () => {
  assert.throws(() => parseEtcdUrl('etcd://'), invalid('url'));
  assert.throws(() => parseEtcdUrl('etcd://host'), invalid('url'));
  assert.throws(() => parseEtcdUrl('etcd://a:1,b'), invalid('url'));
  assert.throws(() => parseEtcdUrl('etcd://a:99999'), invalid('url'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { prefix: '' }), invalid('options.prefix'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { prefix: 'a\u0000' }), invalid('options.prefix'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { requestTimeoutMs: 5 }), invalid('options.requestTimeoutMs'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { operationTimeoutMs: 1.5 }), invalid('options.operationTimeoutMs'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { historyLimit: 1 }), invalid('options.historyLimit'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { autoSweep: 'yes' as unknown as boolean }), invalid('options.autoSweep'));
  assert.throws(() => resolveEtcdOptions('etcd://a:1', { schema: 'x' } as never), invalid('options.schema'));
  await assert.rejects(openStore('etcd://nohost'), invalid('url'));
});

test('a cluster that does not answer is STORE_UNAVAILABLE within operationTimeoutMs', async () => {
  const started = performance.now();
  // Port 9 (discard) on loopback: nothing listens, connections are refused.
  await assert.rejects(openStore('etcd://127.0.0.1:9', { operationTimeoutMs: 300, requestTimeoutMs: 200 }), (error: unknown) => {
    assert.ok(error instanceof HoldfastError && error.code === 'STORE_UNAVAILABLE', String(error));
    return true;
  });
  assert.ok(performance.now() - started < 3000);
});
