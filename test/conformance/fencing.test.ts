/**
 * SPEC 3.3 Fencing: fences are positive integers that strictly increase across all grants of a
 * store (every key, every `Locks` object), restarts included.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Locks } from '../../src/index.js';
import { background, waitForWaiters } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

function assertIncreasing(fences: number[], what: string): void {
  for (const fence of fences) assert.ok(Number.isSafeInteger(fence) && fence > 0, `${what}: fence ${fence} is not a positive integer`);
  for (let i = 1; i < fences.length; i++) {
    assert.ok(fences[i]! > fences[i - 1]!, `${what}: fence ${fences[i]} issued after ${fences[i - 1]}`);
  }
}

describeEachStore('Fencing', (ctx) => {
  it('fences strictly increase across grants of several Locks objects and keys', TIMEOUT, async () => {
    const objects: Locks[] = await Promise.all([ctx.open({ owner: 'a' }), ctx.open({ owner: 'b' }), ctx.open({ owner: 'c' })]);
    const fences: number[] = [];
    for (let i = 0; i < 30; i++) {
      const locks = objects[i % 3]!;
      const lease = await locks.acquire(i % 2 === 0 ? 'fence/same' : `fence/k${i}`, { mode: i % 5 === 0 ? 'shared' : 'exclusive' });
      fences.push(lease.fence);
      if (i % 4 !== 3) await lease.release();
    }
    assertIncreasing(fences, 'sequential grants');
  });

  it('concurrent grants get distinct fences, and a grant that ended before another began has the lower one', TIMEOUT, async () => {
    const objects: Locks[] = await Promise.all([ctx.open(), ctx.open(), ctx.open()]);
    // Keys under one root and under several; waves, so that some grants end before others begin.
    const grants: Array<{ fence: number; sent: number; answered: number }> = [];
    for (let wave = 0; wave < 3; wave++) {
      await Promise.all(Array.from({ length: 10 }, async (_, i) => {
        const n = wave * 10 + i;
        const sent = performance.now();
        const lease = await objects[n % 3]!.acquire(n % 2 === 0 ? `par/${n}` : `par${n}`, { owner: `o${n}` });
        grants.push({ fence: lease.fence, sent, answered: performance.now() });
      }));
    }
    const fences = grants.map((g) => g.fence);
    assert.equal(new Set(fences).size, fences.length, 'two grants got the same fence');
    const acquired = (await objects[0]!.history({ limit: 1000 })).filter((e) => e.type === 'acquired');
    assert.deepEqual(acquired.map((e) => e.fence).sort((x, y) => x - y), [...fences].sort((x, y) => x - y));
    // Fences follow real time: grants that overlap may get theirs in either order, but one
    // answered before another was sent was issued first.
    for (const a of grants) {
      for (const b of grants) {
        if (a.answered < b.sent) assert.ok(a.fence < b.fence, `fence ${a.fence} was answered before ${b.fence} was asked for`);
      }
    }
  });

  it('a waiter granted later gets a fence above every grant made while it waited', TIMEOUT, async () => {
    const h = await ctx.open({ owner: 'h' });
    const w = await ctx.open({ owner: 'w' });
    const held = await h.acquire('fw/key');
    const waiting = background(w.acquire('fw/key', { waitMs: 20_000 }));
    await waitForWaiters(h, 1);
    let last = held.fence;
    for (let i = 0; i < 5; i++) {
      const other = await h.acquire(`fw/other${i}`);
      assert.ok(other.fence > last);
      last = other.fence;
    }
    await held.release();
    const lease = await waiting;
    assert.ok(lease.fence > last, `waiter fence ${lease.fence} <= ${last}`);
  });

  it('a lease keeps its fence through renewals; get, list and history show the same fence', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const lease = await a.acquire('fr/key', { ttlMs: 5000 });
    await lease.renew();
    const renewed = await a.renew(lease.id, { ttlMs: 8000 });
    assert.equal(renewed.fence, lease.fence);
    assert.equal(lease.fence, (await a.get(lease.id))!.fence);
    assert.equal((await a.list()).locks[0]!.fence, lease.fence);
    assert.equal((await a.history({ key: 'fr/key' }))[0]!.fence, lease.fence);
  });

  // Only durable stores keep the fence counter across a restart (the README says memory does not).
  if (ctx.durable) it('after a restart the next fence is above every fence issued before (even with nothing held)', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    let max = 0;
    for (let i = 0; i < 5; i++) {
      const lease = await a.acquire(`fd/${i % 2}`);
      max = Math.max(max, lease.fence);
      await lease.release();
    }
    const kept = await a.acquire('fd/kept', { ttlMs: 60_000 });
    max = Math.max(max, kept.fence);
    await kept.release();
    assert.deepEqual((await a.list()).locks, []);

    const b = await ctx.reopen({ owner: 'b' });
    const after = await b.acquire('fd/0');
    assert.ok(after.fence > max, `fence ${after.fence} after restart, but ${max} was issued before`);
    await after.release();

    const c = await ctx.reopen({ owner: 'c' });
    const again = await c.acquire('fd/new');
    assert.ok(again.fence > after.fence, `fence ${again.fence} after a second restart, but ${after.fence} was issued before`);
  });
});
