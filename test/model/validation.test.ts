/** Request validation (SPEC section 1): every bad field is named with its reason. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  InvalidRequestError, keyProblem, ancestorsOf, keysOverlap, parseDuration, validateRequest, resourcesConflict,
} from '../../src/index.js';

function rejects(input: Record<string, unknown>, field: string, reason?: RegExp): void {
  assert.throws(
    () => validateRequest(input),
    (error: unknown) => {
      assert.ok(error instanceof InvalidRequestError, `expected InvalidRequestError, got ${String(error)}`);
      assert.equal(error.code, 'INVALID_REQUEST');
      assert.equal(error.status, 400);
      assert.equal(error.field, field);
      if (reason) assert.match(error.reason, reason);
      assert.match(error.message, new RegExp(`\`${field.replace(/[[\].]/g, '\\$&')}\``));
      return true;
    },
  );
}

const ok = { owner: 'me', resources: ['a/b'] };

describe('keys', () => {
  test('valid keys', () => {
    for (const key of ['a', 'apps/42/task', 'ünïcode/键', 'x'.repeat(512), 'a b/c-d_e.f']) assert.equal(keyProblem(key), null, key);
  });
  test('invalid keys say why', () => {
    assert.match(keyProblem('')!, /1\.\.512 bytes/);
    assert.match(keyProblem('x'.repeat(513))!, /got 513/);
    assert.match(keyProblem('é'.repeat(257))!, /got 514/);
    assert.match(keyProblem('a//b')!, /empty segment/);
    assert.match(keyProblem('/a')!, /empty segment/);
    assert.match(keyProblem('a/')!, /empty segment/);
    assert.match(keyProblem('a\nb')!, /control/);
    assert.match(keyProblem('a\u0085b')!, /control/);
    assert.match(keyProblem(42)!, /string/);
    assert.match(keyProblem('\ud800')!, /surrogate/);
  });
  test('ancestry', () => {
    assert.deepEqual(ancestorsOf('a/b/c'), ['a', 'a/b']);
    assert.deepEqual(ancestorsOf('a'), []);
    assert.ok(keysOverlap('apps', 'apps/42/task'));
    assert.ok(keysOverlap('apps/42/task', 'apps'));
    assert.ok(!keysOverlap('apps/4', 'apps/42'));
    assert.ok(!keysOverlap('apps/1', 'apps/2'));
  });
  test('conflict rule of SPEC section 2', () => {
    const r = (key: string, mode: 'shared' | 'exclusive') => ({ key, mode });
    assert.ok(!resourcesConflict(r('p', 'shared'), r('p', 'shared')));
    assert.ok(resourcesConflict(r('p', 'shared'), r('p', 'exclusive')));
    assert.ok(resourcesConflict(r('p', 'exclusive'), r('p', 'exclusive')));
    assert.ok(!resourcesConflict(r('p', 'shared'), r('p/x', 'shared')));
    assert.ok(resourcesConflict(r('p', 'shared'), r('p/x', 'exclusive')));
    assert.ok(resourcesConflict(r('p', 'exclusive'), r('p/x', 'shared')));
    assert.ok(!resourcesConflict(r('p', 'exclusive'), r('q', 'exclusive')));
  });
});

describe('durations', () => {
  test('units', () => {
    assert.equal(parseDuration('500ms', 'd'), 500);
    assert.equal(parseDuration('30s', 'd'), 30_000);
    assert.equal(parseDuration('5m', 'd'), 300_000);
    assert.equal(parseDuration('2h', 'd'), 7_200_000);
    assert.equal(parseDuration('1.5s', 'd'), 1500);
    assert.equal(parseDuration(250, 'd'), 250);
    assert.equal(parseDuration('250', 'd'), 250);
  });
  test('bad durations name the field', () => {
    assert.throws(() => parseDuration('5 minutes', 'waitMs'), /`waitMs`/);
    assert.throws(() => parseDuration(-1, 'ttlMs'), /`ttlMs`/);
    assert.throws(() => parseDuration(Number.NaN, 'ttlMs'), /`ttlMs`/);
  });
});

describe('requests', () => {
  test('defaults', () => {
    const { request, waitMs } = validateRequest(ok);
    assert.equal(waitMs, 0);
    assert.equal(request.ttlMs, 30_000);
    assert.equal(request.lockDelayMs, 0);
    assert.deepEqual(request.resources, [{ key: 'a/b', mode: 'exclusive', limit: null }]);
    assert.deepEqual(request.metadata, {});
    assert.match(request.id, /^[A-Za-z0-9_-]{22}$/);
  });
  test('ttl', () => {
    rejects({ ...ok, ttlMs: 5 }, 'ttlMs', /100\.\.604800000 ms, got 5/);
    rejects({ ...ok, ttlMs: 604_800_001 }, 'ttlMs');
    rejects({ ...ok, ttlMs: 'soon' }, 'ttlMs');
    assert.equal(validateRequest({ ...ok, ttlMs: '2m' }).request.ttlMs, 120_000);
  });
  test('owner', () => {
    rejects({ resources: ['a'] }, 'owner', /required/);
    rejects({ ...ok, owner: '' }, 'owner');
    rejects({ ...ok, owner: 'x'.repeat(257) }, 'owner');
    rejects({ ...ok, owner: 7 }, 'owner');
  });
  test('resources', () => {
    rejects({ ...ok, resources: [] }, 'resources', /1\.\.64/);
    rejects({ ...ok, resources: Array.from({ length: 65 }, (_, i) => `k${i}`) }, 'resources', /got 65/);
    rejects({ ...ok, resources: ['a', 'a'] }, 'resources[1].key', /duplicate/);
    rejects({ ...ok, resources: ['a/b', 'a'] }, 'resources[0].key', /ancestor/);
    rejects({ ...ok, resources: ['a//b'] }, 'resources[0]', /empty segment/);
    rejects({ ...ok, resources: [{ key: 'a', mode: 'read' }] }, 'resources[0].mode');
    rejects({ ...ok, resources: [{ key: 'a', limit: 2 }] }, 'resources[0].limit', /only allowed with mode "shared"/);
    rejects({ ...ok, resources: [{ key: 'a', mode: 'shared', limit: 0 }] }, 'resources[0].limit');
    rejects({ ...ok, resources: [{ key: 'a', mode: 'shared', limit: 1_000_001 }] }, 'resources[0].limit');
    rejects({ ...ok, resources: [{ key: 'a', mode: 'shared', limit: 1.5 }] }, 'resources[0].limit');
    rejects({ ...ok, resources: [{ key: 'a', extra: 1 }] }, 'resources[0].extra', /unknown/);
    rejects({ ...ok, resources: 5 }, 'resources');
  });
  test('metadata', () => {
    rejects({ ...ok, metadata: 'hello' }, 'metadata');
    rejects({ ...ok, metadata: [1] }, 'metadata');
    rejects({ ...ok, metadata: { big: 'x'.repeat(16_400) } }, 'metadata', /16384 bytes/);
    assert.deepEqual(validateRequest({ ...ok, metadata: { message: 'hi' } }).request.metadata, { message: 'hi' });
  });
  test('requestId, waitMs and lockDelayMs', () => {
    rejects({ ...ok, requestId: '' }, 'requestId');
    rejects({ ...ok, waitMs: -5 }, 'waitMs');
    rejects({ ...ok, lockDelayMs: '2d' }, 'lockDelayMs');
    assert.equal(validateRequest({ ...ok, waitMs: '30m' }).waitMs, 1_800_000);
  });
});

describe('openLocks', () => {
  test('a `store` that is not a LockStore is named, and nothing is opened', async () => {
    const { openLocks } = await import('../../src/index.js');
    await assert.rejects(openLocks('memory:', { store: { synchronous: 'NORMAL' } as never }), (error: unknown) => {
      assert.ok(error instanceof InvalidRequestError);
      assert.equal(error.field, 'store');
      assert.match(error.message, /storeOptions/);
      return true;
    });
  });
});
