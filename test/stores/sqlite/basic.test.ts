/** The sqlite store through the `LockStore` interface: grants, queues, related keys, admin calls. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HoldfastError, InvalidRequestError } from '../../../src/model/errors.js';
import type { StoreChange } from '../../../src/stores/store.js';
import { createSqliteStore, resolveSqliteOptions, SQLITE_DEFAULTS, type SqliteStore } from '../../../src/stores/sqlite/store.js';
import { request, sleep, tempDir } from './helpers.js';

const tmp = tempDir('basic');
const stores: SqliteStore[] = [];
after(async () => {
  for (const store of stores) await store.close();
  tmp.remove();
});

let fileCount = 0;
/** A store on a new file of this test's directory (closed after the tests). */
function open(): SqliteStore {
  const store = createSqliteStore(join(tmp.dir, `basic-${++fileCount}.db`));
  stores.push(store);
  return store;
}

const once = { waitMs: 0, waiterTtlMs: 10_000 };
const wait = { waitMs: 60_000, waiterTtlMs: 10_000 };

async function grant(store: SqliteStore, input: Parameters<typeof request>[0]) {
  const outcome = await store.acquire(request(input), once);
  assert.equal(outcome.status, 'granted', JSON.stringify(outcome));
  return outcome.status === 'granted' ? outcome.lease : assert.fail();
}

async function status(store: SqliteStore, input: Parameters<typeof request>[0]): Promise<string> {
  return (await store.acquire(request(input), once)).status;
}

describe('sqlite store: basic operations', () => {
  it('says what it is', () => {
    const store = open();
    assert.deepEqual(store.info, { kind: 'sqlite', durable: true, wakeups: 'complete' });
  });

  it('acquires, reads, renews and releases a lease', async () => {
    const store = open();
    const lease = await grant(store, { owner: 'me', resources: ['apps/42/task'], metadata: { message: 'hi' } });
    assert.equal(lease.fence, 1);
    assert.deepEqual(lease.resources, [{ key: 'apps/42/task', mode: 'exclusive', limit: null }]);
    assert.equal(lease.expiresAt - lease.acquiredAt, 60_000);
    assert.deepEqual(await store.get(lease.id), lease);

    const renewed = await store.renew(lease.id, 120_000);
    assert.equal(renewed.status, 'renewed');
    if (renewed.status === 'renewed') {
      assert.equal(renewed.lease.ttlMs, 120_000);
      assert.equal(renewed.lease.expiresAt, renewed.now + 120_000);
      assert.ok(renewed.lease.expiresAt > lease.expiresAt);
    }

    assert.equal(await store.release(lease.id), true);
    assert.equal(await store.release(lease.id), false);
    assert.equal(await store.get(lease.id), null);
    assert.equal((await store.renew(lease.id, 1000)).status, 'lost');
    assert.equal((await store.renew('unknown-lease-id-0000', 1000)).status, 'unknown');
    assert.equal((await grant(store, { owner: 'me', resources: ['apps/42/task'] })).fence, 2);
  });

  it('answers busy with the holders, queues, polls and cancels', async () => {
    const store = open();
    const held = await grant(store, { owner: 'backup-7', resources: ['apps/1'], metadata: { message: 'Backup of app 1' } });
    const busy = await store.acquire(request({ owner: 'task', resources: ['apps/1/task'] }), once);
    assert.equal(busy.status, 'busy');
    if (busy.status === 'busy') {
      assert.deepEqual(busy.holders.map((h) => [h.key, h.owner, h.state, h.metadata]), [['apps/1', 'backup-7', 'held', { message: 'Backup of app 1' }]]);
      assert.ok(busy.retryAfterMs > 59_000 && busy.retryAfterMs <= 60_000);
    }

    const queued = await store.acquire(request({ owner: 'task', resources: ['apps/1/task'] }), wait);
    assert.equal(queued.status, 'queued');
    if (queued.status !== 'queued') return;
    const polled = await store.poll(queued.ticket);
    assert.equal(polled.status, 'queued');
    // A try-once request behind a queued one fails rather than jump the queue.
    await store.release(held.id);
    const granted = await store.poll(queued.ticket);
    assert.equal(granted.status, 'granted');
    if (granted.status === 'granted') assert.equal(granted.lease.id, queued.ticket);

    const second = await store.acquire(request({ owner: 'other', resources: ['apps/1'] }), wait);
    assert.equal(second.status, 'queued');
    if (second.status !== 'queued') return;
    assert.equal(await store.cancel(second.ticket), false);
    assert.equal((await store.poll(second.ticket)).status, 'gone');
    // Cancelling a ticket that was granted meanwhile releases its lease.
    assert.equal(await store.cancel(queued.ticket), true);
    assert.equal(await status(store, { owner: 'other', resources: ['apps/1'] }), 'granted');
  });

  it('grants queued requests in order and pushes the grant to watch listeners', async () => {
    const store = open();
    const changes: StoreChange[] = [];
    const unwatch = store.watch((c) => changes.push(c));
    const first = await grant(store, { owner: 'a', resources: ['k'] });
    const w1 = await store.acquire(request({ owner: 'b', resources: ['k'] }), wait);
    const w2 = await store.acquire(request({ owner: 'c', resources: ['k'] }), wait);
    assert.equal(w1.status, 'queued');
    assert.equal(w2.status, 'queued');
    if (w1.status !== 'queued' || w2.status !== 'queued') return;
    // Not re-entrant, and no jumping the queue: the holder itself waits too.
    assert.equal(await status(store, { owner: 'a', resources: ['k'] }), 'busy');
    const table = await store.list();
    assert.deepEqual(table.waiters.map((w) => [w.owner, w.position]), [['b', 1], ['c', 2]]);

    await store.release(first.id);
    const grantChange = changes.at(-1);
    assert.deepEqual(grantChange?.granted, [w1.ticket]);
    assert.ok((grantChange?.fence ?? 0) > first.fence);
    assert.deepEqual(changes.map((c) => c.type), ['acquired', 'waiting', 'waiting', 'released', 'acquired']);
    assert.equal((await store.poll(w2.ticket)).status, 'queued');
    unwatch();
  });

  it('sees its own grants while promoting several waiters in one operation', async () => {
    const store = open();
    const x = await grant(store, { owner: 'x', resources: ['a'] });
    const tickets: string[] = [];
    for (const [owner, key] of [['w1', 'a/b'], ['w2', 'a/b/c'], ['w3', 'a/c'], ['w4', 'a/c/d'], ['w5', 'a/d']]) {
      const queued = await store.acquire(request({ owner, resources: [key!] }), wait);
      tickets.push(queued.status === 'queued' ? queued.ticket : queued.status);
    }
    const changes: StoreChange[] = [];
    store.watch((c) => changes.push(c));
    await store.release(x.id);
    // w1, w3, w5 are granted; w2 and w4 conflict with grants made in the same operation.
    assert.deepEqual(changes.flatMap((c) => c.granted), [tickets[0], tickets[2], tickets[4]]);
    const statuses = await Promise.all(tickets.map(async (t) => (await store.poll(t)).status));
    assert.deepEqual(statuses, ['granted', 'queued', 'granted', 'queued', 'granted']);
  });

  it('finds conflicts on equal, ancestor and descendant keys only (byte-wise, any UTF-8)', async () => {
    const store = open();
    await grant(store, { owner: 'x', resources: ['apps/42/task'] });
    assert.equal(await status(store, { owner: 'y', resources: ['apps'] }), 'busy');
    assert.equal(await status(store, { owner: 'y', resources: ['apps/42'] }), 'busy');
    assert.equal(await status(store, { owner: 'y', resources: ['apps/42/task/sub'] }), 'busy');
    for (const key of ['apps/4', 'apps/420', 'apps/42/tas', 'apps/42/task0', 'apps/42/task.x', 'apps/42/task-', 'apps/42/taskü', 'apps/42/backup']) {
      assert.equal(await status(store, { owner: 'y', resources: [key] }), 'granted', key);
    }

    await grant(store, { owner: 'x', resources: ['é'] });
    assert.equal(await status(store, { owner: 'y', resources: ['é/ü/😀'] }), 'busy');
    assert.equal(await status(store, { owner: 'y', resources: ['é0'] }), 'granted');
    assert.equal(await status(store, { owner: 'y', resources: ['éa/b'] }), 'granted');
    await grant(store, { owner: 'x', resources: ['😀/日本/x'] });
    assert.equal(await status(store, { owner: 'y', resources: ['😀'] }), 'busy');
    assert.equal(await status(store, { owner: 'y', resources: ['😀/日本'] }), 'busy');
    assert.equal(await status(store, { owner: 'y', resources: ['😀/日'] }), 'granted');
  });

  it('shares keys, counts shared limits and rejects a disagreeing limit', async () => {
    const store = open();
    await grant(store, { owner: 'r1', resources: [{ key: 'pools/P', mode: 'shared' }, 'domains/D1'] });
    await grant(store, { owner: 'r2', resources: [{ key: 'pools/P', mode: 'shared' }, 'domains/D2'] });
    assert.equal(await status(store, { owner: 'r3', resources: [{ key: 'pools/P/x', mode: 'shared' }] }), 'granted');
    assert.equal(await status(store, { owner: 'rc', resources: ['pools/P'] }), 'busy');

    await grant(store, { owner: 's1', resources: [{ key: 'sem', mode: 'shared', limit: 2 }] });
    await grant(store, { owner: 's2', resources: [{ key: 'sem', mode: 'shared', limit: 2 }] });
    assert.equal(await status(store, { owner: 's3', resources: [{ key: 'sem', mode: 'shared', limit: 2 }] }), 'busy');
    await assert.rejects(
      store.acquire(request({ owner: 's3', resources: [{ key: 'sem', mode: 'shared', limit: 3 }] }), once),
      (error: unknown) => error instanceof InvalidRequestError && error.field === 'resources[0].limit',
    );
  });

  it('returns the same lease for a repeated requestId', async () => {
    const store = open();
    const lease = await grant(store, { owner: 'o', resources: ['r'], requestId: 'req-1' });
    const again = await store.acquire(request({ owner: 'o', resources: ['r'], requestId: 'req-1' }), once);
    assert.equal(again.status, 'granted');
    if (again.status === 'granted') assert.equal(again.lease.id, lease.id);
    await assert.rejects(store.acquire(request({ owner: 'o', resources: ['z'] }, lease.id), once), InvalidRequestError);
  });

  it('releases by owner and by force, and records both in history', async () => {
    const store = open();
    const a = await grant(store, { owner: 'task-1', resources: ['apps/1/task'] });
    const b = await grant(store, { owner: 'task-1', resources: ['apps/2/task', 'mail/restart'] });
    await grant(store, { owner: 'task-2', resources: ['apps/3/task'] });
    assert.equal(await store.releaseOwner('task-1', { key: 'mail/restart', by: 'admin' }), 1);
    assert.equal(await store.releaseOwner('task-1', { by: 'admin' }), 1);
    assert.equal(await store.forceRelease('apps/3/task', { by: 'root' }), 1);
    assert.equal(await store.forceRelease('apps/3/task', { by: 'root' }), 0);
    assert.deepEqual((await store.list()).locks, []);

    const events = await store.history();
    assert.deepEqual(
      events.map((e) => [e.type, e.owner, e.fence, e.by, e.reason]),
      [
        ['forced', 'task-2', 3, 'root', 'force'],
        ['released', 'task-1', a.fence, 'admin', 'release-owner'],
        ['released', 'task-1', b.fence, 'admin', 'release-owner'],
        ['acquired', 'task-2', 3, null, null],
        ['acquired', 'task-1', 2, null, null],
        ['acquired', 'task-1', 1, null, null],
      ],
    );
    assert.deepEqual((await store.history({ key: 'mail/restart' })).map((e) => e.type), ['released', 'acquired']);
    assert.deepEqual((await store.history({ owner: 'task-2' })).map((e) => e.type), ['forced', 'acquired']);
    assert.deepEqual((await store.history({ limit: 2 })).map((e) => e.id), [6, 5]);
    assert.deepEqual((await store.history({ beforeId: 3, owner: 'task-1' })).map((e) => e.id), [2, 1]);
    assert.equal((await store.renew(a.id, 1000)).status, 'lost');
  });

  it('lists held and queued keys by prefix', async () => {
    const store = open();
    await grant(store, { owner: 'a', resources: ['apps/1/task', 'box/update'] });
    await grant(store, { owner: 'b', resources: ['apps/10'] });
    await store.acquire(request({ owner: 'c', resources: ['apps/1'] }), wait);
    const table = await store.list({ prefix: 'apps/1' });
    assert.deepEqual(table.locks.map((l) => l.key), ['apps/1/task', 'apps/10']);
    assert.deepEqual(table.waiters.map((w) => [w.key, w.owner, w.position]), [['apps/1', 'c', 1]]);
    assert.equal((await store.list({ prefix: 'box' })).locks.length, 1);
    assert.equal((await store.list()).locks.length, 3);
  });

  it('keeps the keys of a forced lease unavailable for its lock-delay', async () => {
    const store = open();
    await grant(store, { owner: 'a', resources: ['d/k'], lockDelayMs: 300 });
    await store.forceRelease('d/k', { by: 'admin' });
    const busy = await store.acquire(request({ owner: 'b', resources: ['d'] }), once);
    assert.equal(busy.status, 'busy');
    if (busy.status === 'busy') assert.equal(busy.holders[0]?.state, 'delayed');
    await sleep(350);
    assert.equal(await status(store, { owner: 'b', resources: ['d'] }), 'granted');
  });

  it('works on :memory: (not durable)', async () => {
    const store = createSqliteStore(':memory:');
    stores.push(store);
    assert.equal(store.info.durable, false);
    await grant(store, { owner: 'a', resources: ['k'] });
    assert.equal(await status(store, { owner: 'b', resources: ['k'] }), 'busy');
  });

  it('checks its options and names the bad one', () => {
    assert.deepEqual(resolveSqliteOptions(), { ...SQLITE_DEFAULTS });
    assert.ok(Object.isFrozen(SQLITE_DEFAULTS));
    const field = (fn: () => unknown): string => {
      try {
        fn();
      } catch (error) {
        assert.ok(error instanceof HoldfastError && error.code === 'INVALID_REQUEST');
        return (error as InvalidRequestError).field;
      }
      return assert.fail('no error');
    };
    assert.equal(field(() => resolveSqliteOptions({ synchronous: 'OFF' as 'FULL' })), 'options.synchronous');
    assert.equal(field(() => resolveSqliteOptions({ busyTimeoutMs: -1 })), 'options.busyTimeoutMs');
    assert.equal(field(() => resolveSqliteOptions({ historyLimit: 1.5 })), 'options.historyLimit');
    assert.equal(field(() => resolveSqliteOptions({ sync: 'FULL' } as object)), 'options.sync');
    assert.equal(field(() => createSqliteStore('')), 'path');
  });
});
