/**
 * SPEC 3.5 Ownership: only the lease id renews or releases a lease; `releaseOwner(owner)` ends every
 * lease of an owner (or only those on one key); `forceRelease(key)` ends every lease on a key; both
 * are recorded in history with who did them.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LockBusyError, newLeaseId } from '../../src/index.js';
import { background, rejectsWith, sleep } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

describeEachStore('Ownership', (ctx) => {
  it('only the id releases: a wrong id changes nothing, the right id works from any object', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const stranger = await ctx.open({ owner: 'stranger' });
    const lease = await a.acquire('own/key');
    assert.equal(await stranger.release(newLeaseId()), false);
    await rejectsWith(stranger.renew(newLeaseId()), 'NOT_FOUND', 404);
    assert.equal(await stranger.release(lease.id.slice(0, -1) + (lease.id.endsWith('A') ? 'B' : 'A')), false);
    assert.deepEqual((await a.list()).locks.map((l) => l.owner), ['a']);
    // The id is the capability: whoever has it may renew and release, whatever its owner option.
    const renewed = await stranger.renew(lease.id, { ttlMs: 5000 });
    assert.equal(renewed.owner, 'a');
    assert.equal(await stranger.release(lease.id), true);
    assert.deepEqual((await a.list()).locks, []);
    assert.equal(await lease.release(), false);
  });

  it('lease ids are unguessable and never shown by list, history or busy errors', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const ids = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const lease = await a.acquire(`ids/${i}`, { metadata: { message: `lease ${i}` } });
      assert.ok(lease.id.length >= 21, `id ${lease.id} is too short to carry 122 random bits`);
      assert.ok(!ids.has(lease.id));
      ids.add(lease.id);
    }
    const b = await ctx.open({ owner: 'b' });
    const busy = await rejectsWith<LockBusyError>(b.acquire('ids/0'), 'LOCK_BUSY');
    const waiter = background(b.acquire('ids/1', { waitMs: 5000 }));
    const shown = JSON.stringify([await a.list(), await a.history({ limit: 1000 }), busy.toJSON(), busy.message]);
    for (const id of ids) assert.ok(!shown.includes(id), `lease id ${id} is exposed`);
    await a.releaseOwner('a');
    await (await waiter).release();
  });

  it('releaseOwner(owner) ends every lease of that owner and no other', TIMEOUT, async () => {
    const task = await ctx.open({ owner: 'task-17' });
    const other = await ctx.open({ owner: 'other' });
    const admin = await ctx.open({ actor: 'cleanup-job' });
    const l1 = await task.acquire('apps/1/task');
    const l2 = await task.acquire([{ key: 'box/update-task', mode: 'exclusive' }, { key: 'backup-tasks', mode: 'exclusive' }]);
    const l3 = await task.acquire('pools/P', { mode: 'shared' });
    const kept = await other.acquire('pools/P', { mode: 'shared' });
    assert.equal(await admin.releaseOwner('task-17'), 3);
    const table = await admin.list();
    assert.deepEqual(table.locks.map((l) => `${l.key}:${l.owner}`), ['pools/P:other']);
    for (const lease of [l1, l2, l3]) {
      await rejectsWith(admin.renew(lease.id), 'LEASE_LOST', 410);
      await rejectsWith(lease.renew(), 'LEASE_LOST', 410);
      assert.equal(lease.signal.aborted, true, 'a lease that learned it was ended must abort its signal');
    }
    await kept.renew();
    assert.equal(kept.state, 'held');
    assert.equal(await admin.releaseOwner('task-17'), 0);
    assert.equal(await admin.releaseOwner('nobody'), 0);
  });

  it('releaseOwner(owner, { key }) ends only the leases of that owner holding that exact key', TIMEOUT, async () => {
    const vro = await ctx.open({ owner: 'inventory' });
    const other = await ctx.open({ owner: 'other' });
    await vro.acquire('lb/A');
    await vro.acquire('lb/B');
    await vro.acquire(['lb/C', 'lb/D']);
    await other.acquire('lb/E');
    assert.equal(await other.releaseOwner('inventory', { key: 'lb/C' }), 1);
    assert.deepEqual((await vro.list()).locks.map((l) => l.key), ['lb/A', 'lb/B', 'lb/E']);
    assert.equal(await other.releaseOwner('inventory', { key: 'lb/E' }), 0, 'a key held by another owner');
    assert.equal(await other.releaseOwner('inventory', { key: 'lb' }), 0, 'an ancestor key is not the key');
    assert.deepEqual((await vro.list()).locks.map((l) => l.key), ['lb/A', 'lb/B', 'lb/E']);
  });

  it('forceRelease(key) ends every lease on the key and nothing else', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const admin = await ctx.open({ actor: 'ops-admin' });
    const s1 = await a.acquire('force/k', { mode: 'shared' });
    const s2 = await b.acquire('force/k', { mode: 'shared' });
    const elsewhere = await a.acquire('force/other');
    assert.equal(await admin.forceRelease('force/k'), 2);
    assert.deepEqual((await admin.list()).locks.map((l) => l.key), ['force/other']);
    await rejectsWith(admin.renew(s1.id), 'LEASE_LOST');
    await rejectsWith(admin.renew(s2.id), 'LEASE_LOST');
    assert.ok(await admin.get(elsewhere.id));
    assert.equal(await admin.forceRelease('force/k'), 0);
    assert.ok(await b.tryAcquire('force/k'));
  });

  it('history records acquired, released, expired and forced events, newest first, with who did it', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a', actor: 'actor-a' });
    const admin = await ctx.open({ actor: 'ops-admin' });
    const released = await a.acquire('h/released');
    await released.release();
    const expired = await a.acquire('h/expired', { ttlMs: 150, autoRenew: false });
    const forced = await a.acquire('h/forced');
    const cleaned = await a.acquire('h/cleaned', { metadata: { message: 'cleanup' } });
    await sleep(350);
    await admin.forceRelease('h/forced');
    await admin.releaseOwner('a');

    const events = await admin.history({ owner: 'a' });
    assert.deepEqual([...events].sort((x, y) => y.id - x.id).map((e) => e.id), events.map((e) => e.id), 'newest first');
    const of = (fence: number): string[] => events.filter((e) => e.fence === fence).map((e) => e.type).reverse();
    assert.deepEqual(of(released.fence), ['acquired', 'released']);
    assert.deepEqual(of(expired.fence), ['acquired', 'expired']);
    assert.deepEqual(of(forced.fence), ['acquired', 'forced']);
    assert.deepEqual(of(cleaned.fence), ['acquired', 'released']);

    const forcedEvent = events.find((e) => e.fence === forced.fence && e.type === 'forced')!;
    assert.equal(forcedEvent.by, 'ops-admin');
    assert.equal(forcedEvent.owner, 'a');
    assert.deepEqual(forcedEvent.resources.map((r) => r.key), ['h/forced']);
    const cleanup = events.find((e) => e.fence === cleaned.fence && e.type === 'released')!;
    assert.equal(cleanup.by, 'ops-admin');
    for (const event of events) {
      assert.equal(event.owner, 'a');
      assert.ok(!Number.isNaN(Date.parse(event.at)));
    }

    assert.deepEqual((await admin.history({ key: 'h/expired' })).map((e) => e.type), ['expired', 'acquired']);
    assert.equal((await admin.history({ owner: 'a', limit: 2 })).length, 2);
    const older = await admin.history({ owner: 'a', beforeId: events[1]!.id });
    assert.deepEqual(older.map((e) => e.id), events.slice(2).map((e) => e.id));
  });

  it('a release or cancel by id records who asked (`by`) in the history; without it, the owner', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const ops = await ctx.open({ owner: 'ops' });
    const plain = await a.acquire('by/plain');
    const asked = await a.acquire('by/asked');
    const own = await a.acquire('by/own');
    assert.equal(await ops.release(plain.id), true);
    assert.equal(await ops.release(asked.id, { by: 'ops-admin' }), true);
    assert.equal(await a.release(own.id, { by: 'a-cleanup' }), true, 'a lease held by this object, released by id with `by`');
    assert.equal(own.state, 'released');
    // cancel: a ticket whose request was granted meanwhile ends that lease.
    const request = {
      id: newLeaseId(), owner: 'a', resources: [{ key: 'by/ticket', mode: 'exclusive' as const, limit: null }],
      ttlMs: 10_000, requestId: null, metadata: {}, lockDelayMs: 0,
    };
    const granted = await ops.store.acquire(request, { waitMs: 1000, waiterTtlMs: 5000 });
    assert.equal(granted.status, 'granted');
    assert.equal(await ops.store.cancel(request.id, { by: 'ops-canceller' }), true);
    await assert.rejects(ops.release(plain.id, { by: '' }), /`by`/, 'an empty `by` is refused');

    const events = await ops.history({ owner: 'a' });
    const end = (key: string): { by: string | null; reason: string | null } => {
      const event = events.find((e) => e.type === 'released' && e.resources[0]!.key === key);
      assert.ok(event, `no released event for ${key}: ${JSON.stringify(events)}`);
      return { by: event.by, reason: event.reason };
    };
    assert.deepEqual(end('by/plain'), { by: 'a', reason: 'release' });
    assert.deepEqual(end('by/asked'), { by: 'ops-admin', reason: 'release' });
    assert.deepEqual(end('by/own'), { by: 'a-cleanup', reason: 'release' });
    assert.deepEqual(end('by/ticket'), { by: 'ops-canceller', reason: 'cancelled' });
    assert.deepEqual((await ops.list({ prefix: 'by/' })).locks, []);
  });
});
