/**
 * Group commit of the sqlite store: the calls of one turn share a transaction, yet each keeps its
 * own outcome and error, in call order, and a read answers after the writes called before it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HoldfastError } from '../../../src/model/errors.js';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { request, tempDir } from './helpers.js';

const tmp = tempDir('group-commit');
after(tmp.remove);

const once = { waitMs: 0, waiterTtlMs: 10_000 };

describe('sqlite store: group commit', () => {
  it('calls made together are granted in call order, each with its own outcome and error', async () => {
    const store = createSqliteStore(join(tmp.dir, 'order.db'), { synchronous: 'NORMAL' });
    try {
      const first = await store.acquire(request({ owner: 'o', resources: ['used'] }), once);
      assert.equal(first.status, 'granted');
      const usedId = first.status === 'granted' ? first.lease.id : '';
      const calls = Array.from({ length: 20 }, (_, i) =>
        i === 7
          ? store.acquire(request({ owner: 'o', resources: ['again'] }, usedId), once)
          : store.acquire(request({ owner: 'o', resources: [`k${i}`] }), once));
      const settled = await Promise.allSettled(calls);
      const fences = settled.flatMap((s) => (s.status === 'fulfilled' && s.value.status === 'granted' ? [s.value.lease.fence] : []));
      assert.equal(fences.length, 19);
      assert.deepEqual(fences, [...fences].sort((a, b) => a - b), 'fences follow the order of the calls');
      const bad = settled[7]!;
      assert.ok(bad.status === 'rejected' && bad.reason instanceof HoldfastError && bad.reason.code === 'INVALID_REQUEST');
      assert.equal((await store.list()).locks.length, 20, 'the rejected call changed nothing, the others all hold');
    } finally {
      await store.close();
    }
  });

  it('a call aborted before its batch ran is rejected with its reason and leaves nothing', async () => {
    const store = createSqliteStore(join(tmp.dir, 'abort.db'), { synchronous: 'NORMAL' });
    try {
      const controller = new AbortController();
      const aborted = store.acquire(request({ owner: 'o', resources: ['gone'] }), { ...once, signal: controller.signal });
      const other = store.acquire(request({ owner: 'o', resources: ['kept'] }), once);
      controller.abort(new Error('caller left'));
      await assert.rejects(aborted, /caller left/);
      assert.equal((await other).status, 'granted');
      assert.deepEqual((await store.list()).locks.map((l) => l.key), ['kept']);
    } finally {
      await store.close();
    }
  });

  it('a read called after a write of the same turn sees it; close answers the calls already made', async () => {
    const store = createSqliteStore(join(tmp.dir, 'read.db'), { synchronous: 'NORMAL' });
    const lease = request({ owner: 'o', resources: ['r'] });
    const acquired = store.acquire(lease, once);
    const read = store.get(lease.id);
    assert.equal((await acquired).status, 'granted');
    assert.equal((await read)?.id, lease.id);
    const released = store.release(lease.id);
    await store.close();
    assert.equal(await released, true);
  });
});
