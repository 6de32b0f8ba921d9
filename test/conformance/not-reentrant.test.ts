/**
 * SPEC 3.6 Not re-entrant: a request that conflicts with a lease of the same owner waits or fails
 * like any other; `requestId` is the way to retry safely (the same lease back, granted or queued).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LockBusyError } from '../../src/index.js';
import { background, isPending, rejectsWith, sleep, waitForWaiters, waitingOwners } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('Not re-entrant', (ctx) => {
  it('the same owner asking again for a key it holds gets LOCK_BUSY (try-once) naming itself', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'fsm-1' });
    const other = await ctx.open({ owner: 'fsm-1' });
    await a.acquire('re/key');
    const error = await rejectsWith<LockBusyError>(a.acquire('re/key'), 'LOCK_BUSY', 409);
    assert.deepEqual(error.holders.map((h) => `${h.key}:${h.owner}:${h.state}`), ['re/key:fsm-1:held']);
    assert.equal(await a.tryAcquire('re/key'), null);
    assert.equal(await other.tryAcquire('re/key'), null, 'another object of the same owner');
    assert.equal(await a.tryAcquire('re'), null, 'an ancestor, same owner');
    assert.equal(await a.tryAcquire('re/key/sub'), null, 'a descendant, same owner');
    assert.equal(await a.tryAcquire('re/key', { mode: 'shared' }), null);
    assert.equal((await a.list()).locks.length, 1);
  });

  it('the same owner waiting for a key it holds waits, times out, or gets it after the release', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'fsm-1' });
    const first = await a.acquire('re/wait');
    await rejectsWith(a.acquire('re/wait', { waitMs: 300 }), 'WAIT_TIMEOUT', 409);
    const second = background(a.acquire('re/wait', { waitMs: 10_000 }));
    await waitForWaiters(a, 1);
    assert.ok(await isPending(second, 50));
    await first.release();
    const lease = await second;
    assert.notEqual(lease.id, first.id);
    assert.ok(lease.fence > first.fence);
  });

  it('ten contenders of one owner still exclude each other', TIMEOUT, async () => {
    const objects = await Promise.all([ctx.open({ owner: 'same' }), ctx.open({ owner: 'same' })]);
    let inside = 0;
    let max = 0;
    await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      for (let round = 0; round < 4; round++) {
        const lease = await objects[i % 2]!.acquire('re/hammer', { waitMs: 30_000 });
        max = Math.max(max, ++inside);
        await sleep(1);
        inside--;
        await lease.release();
      }
    }));
    assert.equal(max, 1);
  });

  it('a requestId retry of a granted request returns the same lease, from any object', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'vro-wf' });
    const b = await ctx.open({ owner: 'vro-wf' });
    const lease = await a.acquire('re/idem', { requestId: 'run-1', ttlMs: 20_000 });
    const again = await a.acquire('re/idem', { requestId: 'run-1', ttlMs: 20_000 });
    const fromB = await b.acquire('re/idem', { requestId: 'run-1', ttlMs: 20_000, waitMs: 1000 });
    for (const retry of [again, fromB]) {
      assert.equal(retry.id, lease.id);
      assert.equal(retry.fence, lease.fence);
      assert.deepEqual(retry.keys, ['re/idem']);
    }
    const table = await a.list();
    assert.equal(table.locks.length, 1);
    assert.equal((await a.history({ owner: 'vro-wf' })).filter((e) => e.type === 'acquired').length, 1);
  });

  it('a requestId does not match across owners, nor after its lease ended', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'wf-a' });
    const b = await ctx.open({ owner: 'wf-b' });
    const lease = await a.acquire('re/idem2', { requestId: 'shared-id' });
    await rejectsWith(b.acquire('re/idem2', { requestId: 'shared-id' }), 'LOCK_BUSY');
    await lease.release();
    const next = await a.acquire('re/idem2', { requestId: 'shared-id' });
    assert.notEqual(next.id, lease.id);
    assert.ok(next.fence > lease.fence);
  });

  it('a requestId retry of a queued request joins the same queue place and gets the same lease', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const a = await ctx.open({ owner: 'wf' });
    const b = await ctx.open({ owner: 'wf' });
    const later = await ctx.open({ owner: 'later' });
    const held = await holder.acquire('re/q');
    const original = background(a.acquire('re/q', { requestId: 'job-9', waitMs: 20_000 }));
    await waitForWaiters(holder, 1);
    const retry = background(b.acquire('re/q', { requestId: 'job-9', waitMs: 20_000 }));
    await sleep(50);
    const behind = background(later.acquire('re/q', { waitMs: 20_000 }));
    const table = await waitForWaiters(holder, 2);
    assert.deepEqual(waitingOwners(table, 're/q'), ['wf', 'later'], 'the retry must not queue a second request');
    await held.release();
    const [l1, l2] = await Promise.all([original, retry]);
    assert.equal(l1.id, l2.id);
    assert.equal(l1.fence, l2.fence);
    assert.ok(await isPending(behind));
    await l1.release();
    const last = await behind;
    assert.ok(last.fence > l1.fence);
  });

  it('a requestId retry that gives up does not take the original request out of its queue place', TIMEOUT, async () => {
    const holder = await ctx.open({ owner: 'holder' });
    const a = await ctx.open({ owner: 'wf' });
    const b = await ctx.open({ owner: 'wf' });
    const later = await ctx.open({ owner: 'later' });
    const held = await holder.acquire('re/giveup');
    const original = background(a.acquire('re/giveup', { requestId: 'job-10', waitMs: 20_000 }));
    await waitForWaiters(holder, 1);
    const behind = background(later.acquire('re/giveup', { waitMs: 20_000 }));
    await waitForWaiters(holder, 2);
    // A retry (say, from a client whose connection dropped) that waits less and times out.
    await rejectsWith(b.acquire('re/giveup', { requestId: 'job-10', waitMs: 200 }), 'WAIT_TIMEOUT');
    await sleep(100);
    const table = await holder.list();
    assert.deepEqual(waitingOwners(table, 're/giveup'), ['wf', 'later'], 'the original request lost its place');
    await held.release();
    const lease = await original;
    assert.ok(await isPending(behind), 'the later request overtook the original');
    await lease.release();
    await behind;
  });
});
