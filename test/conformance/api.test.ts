/**
 * The library surface every store must serve the same way (SPEC 1 and 6): the lease fields,
 * `list()` with holders and positioned waiters, `tryAcquire`, `withLock` and `await using`.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { background, rejectsWith, waitForWaiters } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describeEachStore('Library surface', (ctx) => {
  it('a lease carries id, owner, resources, fence, times and metadata', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'task-1' });
    const lease = await a.acquire([{ key: 'lf/a', mode: 'shared', limit: 4 }, 'lf/b'], { ttlMs: 5000, metadata: { message: 'hi', n: 1 } });
    assert.equal(lease.owner, 'task-1');
    assert.deepEqual(lease.resources, [{ key: 'lf/a', mode: 'shared', limit: 4 }, { key: 'lf/b', mode: 'exclusive', limit: null }]);
    assert.deepEqual(lease.keys, ['lf/a', 'lf/b']);
    assert.deepEqual(lease.metadata, { message: 'hi', n: 1 });
    assert.ok(lease.acquiredAt instanceof Date && lease.expiresAt instanceof Date);
    assert.equal(lease.state, 'held');
    assert.ok(a.held.includes(lease));
    const json = lease.toJSON();
    assert.match(String(json['acquiredAt']), ISO);
    assert.match(String(json['expiresAt']), ISO);
    const record = await a.get(lease.id);
    assert.ok(record);
    assert.equal(record.owner, 'task-1');
    assert.deepEqual(record.resources, lease.resources);
    assert.deepEqual(record.metadata, lease.metadata);
    assert.equal(record.acquiredAt, lease.acquiredAt.getTime());
  });

  it('list() shows holders and waiters with 1-based positions per key, without lease ids', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const c = await ctx.open({ owner: 'c' });
    const d = await ctx.open({ owner: 'd' });
    const pool = await a.acquire('ls/pool', { mode: 'shared', limit: 3, metadata: { message: 'reading' } });
    const x = await b.acquire('ls/x');
    const cw = background(c.acquire('ls/pool', { waitMs: 20_000, metadata: { message: 'c waits' } }));
    await waitForWaiters(a, 1);
    const dw = background(d.acquire(['ls/pool', 'ls/x'], { waitMs: 20_000 }));
    const table = await waitForWaiters(a, 3);

    assert.deepEqual(table.locks.map((l) => `${l.key}:${l.mode}:${l.limit}:${l.owner}`), ['ls/pool:shared:3:a', 'ls/x:exclusive:null:b']);
    const held = table.locks[0]!;
    assert.equal(held.fence, pool.fence);
    assert.equal(Date.parse(held.acquiredAt), pool.acquiredAt.getTime());
    assert.equal(Date.parse(held.expiresAt), pool.expiresAt.getTime());
    assert.match(held.acquiredAt, ISO);
    assert.deepEqual(held.metadata, { message: 'reading' });

    const rows = table.waiters.map((w) => `${w.key}:${w.mode}:${w.owner}:${w.position}`).sort();
    assert.deepEqual(rows, ['ls/pool:exclusive:c:1', 'ls/pool:exclusive:d:2', 'ls/x:exclusive:d:1']);
    const cRow = table.waiters.find((w) => w.owner === 'c')!;
    assert.deepEqual(cRow.metadata, { message: 'c waits' });
    assert.match(cRow.since, ISO);
    const waitUntil = Date.parse(cRow.waitUntil) - Date.parse(cRow.since);
    assert.ok(waitUntil > 19_000 && waitUntil <= 20_000, `waitUntil is ${waitUntil} ms after since`);

    const json = JSON.stringify(table);
    for (const id of [pool.id, x.id]) assert.ok(!json.includes(id));
    for (const row of table.locks) assert.ok(!('id' in row));

    const onlyX = await a.list({ prefix: 'ls/x' });
    assert.deepEqual(onlyX.locks.map((l) => l.key), ['ls/x']);
    assert.deepEqual(onlyX.waiters.map((w) => `${w.key}:${w.owner}:${w.position}`), ['ls/x:d:1']);
    assert.deepEqual(await a.list({ prefix: 'nothing/' }), { locks: [], waiters: [] });

    await Promise.all([pool.release(), x.release()]);
    await (await cw).release();
    await (await dw).release();
    assert.deepEqual(await a.list(), { locks: [], waiters: [] });
  });

  it('tryAcquire returns null when busy and a lease when free', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const lease = await a.tryAcquire('try/key');
    assert.ok(lease);
    assert.equal(await b.tryAcquire('try/key'), null);
    await lease.release();
    assert.ok(await b.tryAcquire('try/key'));
  });

  it('withLock runs the work under the lock and releases it afterwards', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const seen = { id: '', aborted: true };
    const result = await a.withLock('wl/key', { ttlMs: 5000 }, async (lease) => {
      assert.deepEqual(lease.keys, ['wl/key']);
      assert.equal(await b.tryAcquire('wl/key'), null);
      seen.id = lease.id;
      seen.aborted = lease.signal.aborted;
      return 42;
    });
    assert.equal(result, 42);
    assert.equal(seen.aborted, false, 'the lease signal was aborted inside the work');
    assert.deepEqual((await a.list()).locks, []);
    await rejectsWith(a.renew(seen.id), 'LEASE_LOST');
  });

  it('withLock releases when the work throws, and rethrows the error', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const failure = new Error('work failed');
    const signals: AbortSignal[] = [];
    await assert.rejects(
      a.withLock('wl/throw', {}, async (lease) => {
        signals.push(lease.signal);
        throw failure;
      }),
      (error) => error === failure,
    );
    assert.equal(signals[0]!.aborted, true, 'the lease signal is aborted once the lease is released');
    assert.deepEqual((await a.list()).locks, []);
    assert.ok(await a.tryAcquire('wl/throw', { owner: 'b' }));
  });

  it('withLock on a busy key throws LOCK_BUSY without running the work', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    await a.acquire('wl/busy');
    let ran = false;
    await rejectsWith(b.withLock('wl/busy', {}, () => (ran = true)), 'LOCK_BUSY');
    assert.equal(ran, false);
  });

  it('many concurrent waits on one Locks object raise no process warning', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const waiters = await ctx.open({ owner: 'w' });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(`${warning.name}: ${warning.message}`);
    };
    process.on('warning', onWarning);
    try {
      const held = await holder.acquire('many/key');
      const waits = Array.from({ length: 15 }, (_, i) => background(waiters.acquire('many/key', { owner: `w${i}`, waitMs: 20_000 })));
      await waitForWaiters(holder, 15);
      await held.release();
      // Each releases as soon as it is granted: the queue order is the store's, not the call order.
      await Promise.all(waits.map(async (wait) => (await wait).release()));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
  });

  it('await using releases the lease at the end of the block, also on throw', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    {
      await using lease = await a.acquire('using/key');
      assert.equal(lease.state, 'held');
      assert.equal((await a.list()).locks.length, 1);
    }
    assert.deepEqual((await a.list()).locks, []);
    const failure = new Error('inside the block');
    await assert.rejects(async () => {
      await using lease = await a.acquire('using/key');
      assert.equal(lease.state, 'held');
      throw failure;
    }, (error) => error === failure);
    assert.deepEqual((await a.list()).locks, []);
  });
});
