/**
 * SPEC 3.2 All or nothing: a request with several resources is granted whole or not at all; it
 * never holds some keys while waiting for others, so one request cannot deadlock another.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LockBusyError, type Locks } from '../../src/index.js';
import { background, holdingOwners, isPending, randomInt, rejectsWith, shuffle, sleep, waitForWaiters } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('All or nothing', (ctx) => {
  it('a multi-resource request blocked on one key holds none of them while it waits', TIMEOUT, async () => {
    const x = await ctx.open({ owner: 'x' });
    const r = await ctx.open({ owner: 'r' });
    const other = await ctx.open({ owner: 'other' });
    await x.acquire('b');
    const abort = new AbortController();
    const waiting = background(r.acquire(['a', 'b', 'c'], { waitMs: 20_000, signal: abort.signal }));
    const table = await waitForWaiters(x, 3);
    assert.deepEqual(table.locks.map((l) => `${l.key}:${l.owner}`), ['b:x'], 'the waiting request holds a key');
    assert.deepEqual(table.waiters.map((w) => `${w.key}:${w.owner}:${w.position}`).sort(), ['a:r:1', 'b:r:1', 'c:r:1']);

    // `a` is free of holders; a try-once for it fails only because `r` is queued for it (fairness),
    // and the error says so: the blocker is a queued request, not a held lock.
    const busy = await rejectsWith<LockBusyError>(other.acquire('a'), 'LOCK_BUSY');
    assert.ok(busy.holders.length > 0);
    for (const holder of busy.holders) {
      assert.equal(holder.state, 'queued', `"a" is reported ${holder.state} by ${holder.owner}`);
      assert.equal(holder.owner, 'r');
    }
    assert.ok(await other.tryAcquire('a2'), 'an unrelated key is free');

    const reason = new Error('give up');
    abort.abort(reason);
    await assert.rejects(waiting, (error) => error === reason);
    // Nothing was ever held by the waiter: every key it asked for is free at once.
    assert.ok(await other.tryAcquire('a'));
    assert.ok(await other.tryAcquire('c'));
    assert.deepEqual((await r.history({ owner: 'r' })).map((e) => e.type), []);
  });

  it('keys freed one by one are not taken piecemeal; the request is granted whole when the last is free', TIMEOUT, async () => {
    const h = await ctx.open({ owner: 'h' });
    const g = await ctx.open({ owner: 'g' });
    const r = await ctx.open({ owner: 'r' });
    const onA = await h.acquire('a');
    const onC = await g.acquire('c');
    const waiting = background(r.acquire(['a', 'b', 'c'], { waitMs: 20_000 }));
    await waitForWaiters(h, 3);
    await onA.release();
    await sleep(50);
    assert.ok(await isPending(waiting), 'granted while "c" is still held');
    assert.deepEqual(holdingOwners(await h.list(), 'a'), [], '"a" was taken before the whole request could be granted');
    await onC.release();
    const lease = await waiting;
    assert.deepEqual(lease.keys, ['a', 'b', 'c']);
    const table = await h.list();
    assert.deepEqual(table.locks.map((l) => `${l.key}:${l.owner}:${l.fence}`).sort(), ['a', 'b', 'c'].map((k) => `${k}:r:${lease.fence}`));
    assert.deepEqual(table.waiters, []);
  });

  it('others may take what does not conflict with the waiting request (oVirt: shared pool, exclusive domain)', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const cmd = await ctx.open({ owner: 'cmd-1' });
    const other = await ctx.open({ owner: 'cmd-2' });
    const domain = await holder.acquire('domains/D1');
    const waiting = background(cmd.acquire([{ key: 'pools/P', mode: 'shared' }, { key: 'domains/D1', mode: 'exclusive' }], { waitMs: 20_000 }));
    await waitForWaiters(holder, 2);
    const together = await other.tryAcquire([{ key: 'pools/P', mode: 'shared' }, { key: 'domains/D2', mode: 'exclusive' }]);
    assert.ok(together, 'a command on another domain of the same pool must run while the first waits');
    await domain.release();
    const lease = await waiting;
    assert.deepEqual(holdingOwners(await holder.list(), 'pools/P'), ['cmd-1', 'cmd-2']);
    await Promise.all([lease.release(), together.release()]);
  });

  it('two waiters with crossed key orders are served one after the other, never deadlocked', TIMEOUT, async () => {
    const h = await ctx.open({ owner: 'h' });
    const g = await ctx.open({ owner: 'g' });
    const one = await ctx.open({ owner: 'one' });
    const two = await ctx.open({ owner: 'two' });
    const onA = await h.acquire('a');
    const onB = await g.acquire('b');
    const first = background(one.acquire(['a', 'b'], { waitMs: 20_000 }));
    await waitForWaiters(h, 2);
    const second = background(two.acquire(['b', 'a'], { waitMs: 20_000 }));
    await waitForWaiters(h, 4);
    await Promise.all([onA.release(), onB.release()]);
    const lease1 = await first;
    assert.deepEqual(lease1.keys, ['a', 'b']);
    assert.ok(await isPending(second), 'both crossed requests hold at once');
    const table = await h.list();
    assert.deepEqual(table.locks.map((l) => l.owner), ['one', 'one']);
    assert.deepEqual(table.waiters.map((w) => w.owner), ['two', 'two']);
    await lease1.release();
    const lease2 = await second;
    assert.deepEqual(lease2.keys, ['b', 'a']);
    assert.ok(lease2.fence > lease1.fence);
  });

  it('many contenders taking random key sets in random orders all finish, and no key is held twice', TIMEOUT, async () => {
    const objects: Locks[] = await Promise.all([ctx.open(), ctx.open(), ctx.open()]);
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5'];
    const holders = new Map<string, number>();
    let grants = 0;
    const loops = Array.from({ length: 12 }, async (_, i) => {
      const locks = objects[i % objects.length]!;
      for (let round = 0; round < 8; round++) {
        const wanted = shuffle(keys).slice(0, 2 + randomInt(3));
        const lease = await locks.acquire(wanted, { owner: `c${i}`, waitMs: 45_000 });
        grants++;
        for (const key of wanted) {
          assert.equal(holders.get(key) ?? 0, 0, `${key} granted to c${i} while held`);
          holders.set(key, 1);
        }
        await sleep(randomInt(3));
        for (const key of wanted) holders.set(key, 0);
        await lease.release();
      }
    });
    const results = await Promise.allSettled(loops);
    for (const result of results) if (result.status === 'rejected') throw result.reason;
    assert.equal(grants, 96);
    const table = await objects[0]!.list();
    assert.deepEqual(table, { locks: [], waiters: [] });
  });

  it('a multi-resource try-once that conflicts on one key gets nothing', TIMEOUT, async () => {
    const h = await ctx.open({ owner: 'h' });
    const r = await ctx.open({ owner: 'r' });
    await h.acquire('m/2');
    const busy = await rejectsWith<LockBusyError>(r.acquire(['m/1', 'm/2', 'm/3']), 'LOCK_BUSY');
    assert.deepEqual(busy.holders.map((x) => `${x.key}:${x.owner}`), ['m/2:h']);
    assert.deepEqual((await h.list()).locks.map((l) => l.key), ['m/2']);
    assert.ok(await h.tryAcquire(['m/1', 'm/3'], { owner: 'other' }));
  });
});
