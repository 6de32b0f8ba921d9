/**
 * SPEC 3.1 Safety: at no instant are two live, conflicting leases held. Hammered with many
 * contenders over several `Locks` objects on one store, and checked case by case for the conflict
 * rule of SPEC 2 (modes, ancestors and descendants, shared limits).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { LockBusyError, type Lease, type Locks, type Mode } from '../../src/index.js';
import { background, keysOverlap, randomInt, rejectsWith, sleep } from './helpers.js';
import { describeEachStore, TIMEOUT, type StoreContext } from './stores.js';

async function openMany(ctx: StoreContext, count: number): Promise<Locks[]> {
  return Promise.all(Array.from({ length: count }, () => ctx.open()));
}

interface HammerInput {
  objects: Locks[];
  contenders: number;
  rounds: number;
  /** Key and mode of contender `i` in round `r`. */
  pick: (i: number, r: number) => { key: string; mode: Mode; limit?: number };
  /** Called inside the critical section with the lease; may throw to fail the run. */
  enter: (lease: Lease, key: string, mode: Mode) => void;
  leave: (lease: Lease, key: string, mode: Mode) => void;
  holdMs: () => number;
}

/** Runs `contenders` loops of acquire (waiting) / critical section / release; returns the grant count. */
async function hammer(input: HammerInput): Promise<number> {
  let grants = 0;
  const loops = Array.from({ length: input.contenders }, async (_, i) => {
    const locks = input.objects[i % input.objects.length]!;
    for (let r = 0; r < input.rounds; r++) {
      const { key, mode, limit } = input.pick(i, r);
      const lease = await locks.acquire(key, { owner: `contender-${i}`, mode, limit, ttlMs: 30_000, waitMs: 45_000 });
      grants++;
      input.enter(lease, key, mode);
      try {
        assert.equal(lease.state, 'held');
        await sleep(input.holdMs());
        assert.equal(lease.signal.aborted, false, 'the lease was lost inside the critical section');
      } finally {
        input.leave(lease, key, mode);
        await lease.release();
      }
    }
  });
  const results = await Promise.allSettled(loops);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
  return grants;
}

describeEachStore('Safety', (ctx) => {
  it('40 contenders on one exclusive key: never two inside, fences increase in grant order', TIMEOUT, async () => {
    const objects = await openMany(ctx, 4);
    let inside = 0;
    let max = 0;
    const fences: number[] = [];
    const grants = await hammer({
      objects, contenders: 40, rounds: 3,
      pick: () => ({ key: 'hammer/one', mode: 'exclusive' }),
      enter: (lease) => {
        inside++;
        max = Math.max(max, inside);
        fences.push(lease.fence);
      },
      leave: () => inside--,
      holdMs: () => randomInt(3),
    });
    assert.equal(grants, 120);
    assert.equal(max, 1, 'two exclusive holders were inside at once');
    for (let i = 1; i < fences.length; i++) assert.ok(fences[i]! > fences[i - 1]!, `fence ${fences[i]} after ${fences[i - 1]}`);
  });

  it('40 contenders on a shared key with limit 3: never more than 3 inside', TIMEOUT, async () => {
    const objects = await openMany(ctx, 4);
    let inside = 0;
    let max = 0;
    const grants = await hammer({
      objects, contenders: 40, rounds: 3,
      pick: () => ({ key: 'hammer/pool', mode: 'shared', limit: 3 }),
      enter: () => {
        inside++;
        max = Math.max(max, inside);
      },
      leave: () => inside--,
      holdMs: () => 5 + randomInt(10),
    });
    assert.equal(grants, 120);
    assert.ok(max <= 3, `${max} shared holders inside with limit 3`);
    assert.ok(max >= 2, `the semaphore never let two holders in at once (max ${max})`);
  });

  it('readers and writers on one key: a writer is alone, readers share', TIMEOUT, async () => {
    const objects = await openMany(ctx, 4);
    let readers = 0;
    let writers = 0;
    let maxReaders = 0;
    await hammer({
      objects, contenders: 40, rounds: 3,
      pick: (i) => ({ key: 'hammer/rw', mode: i % 4 === 0 ? 'exclusive' : 'shared' }),
      enter: (_lease, _key, mode) => {
        if (mode === 'exclusive') writers++;
        else readers++;
        maxReaders = Math.max(maxReaders, readers);
        assert.ok(writers === 0 || (writers === 1 && readers === 0), `writers ${writers}, readers ${readers} inside at once`);
      },
      leave: (_lease, _key, mode) => (mode === 'exclusive' ? writers-- : readers--),
      holdMs: () => 2 + randomInt(5),
    });
    assert.ok(maxReaders >= 2, 'shared holders never overlapped');
  });

  it('random keys of one tree in random modes: no two conflicting holders at once', TIMEOUT, async () => {
    const objects = await openMany(ctx, 4);
    const keys = ['t', 't/a', 't/a/1', 't/a/2', 't/b', 't/b/1'];
    const inside = new Map<Lease, { key: string; mode: Mode }>();
    await hammer({
      objects, contenders: 40, rounds: 3,
      pick: () => ({ key: keys[randomInt(keys.length)]!, mode: randomInt(3) === 0 ? 'shared' : 'exclusive' }),
      enter: (lease, key, mode) => {
        for (const other of inside.values()) {
          const conflict = keysOverlap(key, other.key) && (mode === 'exclusive' || other.mode === 'exclusive');
          assert.ok(!conflict, `${mode} ${key} granted while ${other.mode} ${other.key} is held`);
        }
        inside.set(lease, { key, mode });
      },
      leave: (lease) => inside.delete(lease),
      holdMs: () => randomInt(4),
    });
  });

  it('an ancestor blocks its descendants and a descendant blocks its ancestors', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const apps = await a.acquire('apps');
    assert.equal(await b.tryAcquire('apps/42/task'), null);
    assert.equal(await b.tryAcquire('apps/42'), null);
    assert.equal(await b.tryAcquire('apps/42/task', { mode: 'shared' }), null);
    await apps.release();

    const task = await a.acquire('apps/42/task');
    assert.equal(await b.tryAcquire('apps'), null);
    assert.equal(await b.tryAcquire('apps/42'), null);
    assert.equal(await b.tryAcquire('apps', { mode: 'shared' }), null);
    const sibling = await b.tryAcquire('apps/42/backup');
    assert.ok(sibling, 'a sibling key must not conflict');
    await Promise.all([task.release(), sibling.release()]);
    assert.deepEqual((await a.list()).locks, []);
  });

  it('siblings and keys that only share a prefix of characters do not conflict', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const one = await a.acquire('apps/1');
    const two = await b.tryAcquire('apps/2');
    assert.ok(two, 'apps/1 and apps/2 must not conflict');
    const appsx = await b.tryAcquire('appsx');
    assert.ok(appsx, '"appsx" is not below "apps"');
    const app = await b.tryAcquire('apps/1x');
    assert.ok(app, '"apps/1x" is not below "apps/1"');
    assert.equal((await a.list()).locks.length, 4);
  });

  it('shared with shared is granted, on one key and on ancestor and descendant keys', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const c = await ctx.open({ owner: 'c' });
    await a.acquire('pools/P', { mode: 'shared' });
    assert.ok(await b.tryAcquire('pools/P', { mode: 'shared' }), 'shared + shared on one key');
    assert.ok(await c.tryAcquire('pools/P/x', { mode: 'shared' }), 'shared + shared on a descendant');
    const table = await a.list();
    assert.deepEqual(table.locks.map((l) => `${l.key}:${l.mode}:${l.owner}`).sort(), ['pools/P/x:shared:c', 'pools/P:shared:a', 'pools/P:shared:b']);
  });

  it('shared and exclusive conflict, on one key and between ancestor and descendant', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    const shared = await a.acquire('pools/P', { mode: 'shared' });
    assert.equal(await b.tryAcquire('pools/P/x'), null, 'exclusive pools/P/x under shared pools/P');
    assert.equal(await b.tryAcquire('pools/P'), null, 'exclusive pools/P with shared pools/P');
    await shared.release();

    const exclusive = await a.acquire('pools/P/x');
    assert.equal(await b.tryAcquire('pools/P', { mode: 'shared' }), null, 'shared pools/P over exclusive pools/P/x');
    assert.equal(await b.tryAcquire('pools/P/x', { mode: 'shared' }), null, 'shared pools/P/x with exclusive pools/P/x');
    await exclusive.release();
    assert.ok(await b.tryAcquire('pools/P', { mode: 'shared' }));
  });

  it('LOCK_BUSY names the holder: key, mode, owner, times, metadata and message', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'backup-7' });
    const b = await ctx.open({ owner: 'app-task' });
    const lease = await a.acquire('apps/42', { ttlMs: 20_000, metadata: { message: 'Backup of app 42 in progress', job: 7 } });
    const error = await rejectsWith<LockBusyError>(b.acquire('apps/42/task'), 'LOCK_BUSY', 409);
    assert.ok(error instanceof LockBusyError);
    assert.equal(error.holders.length, 1);
    const [holder] = error.holders;
    assert.equal(holder!.key, 'apps/42');
    assert.equal(holder!.mode, 'exclusive');
    assert.equal(holder!.owner, 'backup-7');
    assert.equal(holder!.state, 'held');
    assert.deepEqual(holder!.metadata, { message: 'Backup of app 42 in progress', job: 7 });
    assert.equal(Date.parse(holder!.acquiredAt), lease.acquiredAt.getTime());
    assert.equal(Date.parse(holder!.expiresAt!), lease.expiresAt.getTime());
    assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 20_000, `retryAfterMs ${error.retryAfterMs}`);
    assert.match(error.message, /apps\/42/);
    assert.match(error.message, /backup-7/);
    assert.match(error.message, /Backup of app 42 in progress/);
    assert.match(error.message, /expires in \d+ s/);
  });

  it('a shared limit is a semaphore: limit holders at once, the next one waits its turn', TIMEOUT, async () => {
    const objects = await Promise.all(['a', 'b', 'c'].map((owner) => ctx.open({ owner })));
    const [a, b, c] = objects as [Locks, Locks, Locks];
    const first = await a.acquire('sem/db', { mode: 'shared', limit: 2 });
    await b.acquire('sem/db', { mode: 'shared', limit: 2 });
    const busy = await rejectsWith<LockBusyError>(c.acquire('sem/db', { mode: 'shared', limit: 2 }), 'LOCK_BUSY');
    assert.deepEqual(busy.holders.map((h) => h.owner).sort(), ['a', 'b']);
    const third = background(c.acquire('sem/db', { mode: 'shared', limit: 2, waitMs: 10_000 }));
    await sleep(50);
    await first.release();
    const lease = await third;
    assert.deepEqual((await a.list()).locks.map((l) => l.owner).sort(), ['b', 'c']);
    assert.equal(lease.resources[0]!.limit, 2);
  });

  it('a shared limit of 1 admits one shared holder', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    await a.acquire('sem/one', { mode: 'shared', limit: 1 });
    assert.equal(await b.tryAcquire('sem/one', { mode: 'shared', limit: 1 }), null);
  });

  it('a limit that disagrees with the holders is INVALID_REQUEST naming the limit, and changes nothing', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const b = await ctx.open({ owner: 'b' });
    await a.acquire('sem/x', { mode: 'shared', limit: 2, metadata: { message: 'two at most' } });
    const before = await a.list();
    for (const waitMs of [0, 2000]) {
      const error = await rejectsWith(b.acquire('sem/x', { mode: 'shared', limit: 3, waitMs }), 'INVALID_REQUEST', 400);
      assert.match((error as unknown as { field: string }).field, /limit/);
      const multi = await rejectsWith(
        b.acquire([{ key: 'other', mode: 'exclusive' }, { key: 'sem/x', mode: 'shared', limit: 5 }], { waitMs }),
        'INVALID_REQUEST', 400,
      );
      assert.match((multi as unknown as { field: string }).field, /limit/);
    }
    assert.deepEqual(await a.list(), before, 'a rejected request changed the lock table');
    assert.equal((await a.history({ owner: 'b' })).length, 0);
    assert.ok(await b.tryAcquire('other'), 'the rejected multi-resource request kept a key');
  });
});
