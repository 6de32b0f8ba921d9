import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidRequestError } from '../../../src/model/errors.js';
import type { RequestInput } from '../../../src/model/request.js';
import type { AcquireOutcome } from '../../../src/stores/store.js';
import { holdPath, request, sleep, suiteStore } from './helpers.js';

const wait = { waitMs: 10_000, waiterTtlMs: 10_000 };
const once = { waitMs: 0, waiterTtlMs: 5000 };

describe('postgres store: conflicts, queue, time', () => {
  const suite = suiteStore();
  const { schema } = suite;

  const tryOnce = async (input: RequestInput): Promise<AcquireOutcome> => suite.store.acquire(request(input), once);

  test('shared and exclusive on one key', async () => {
    assert.equal((await tryOnce({ owner: 'r1', resources: [{ key: 'sx/k', mode: 'shared' }] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 'r2', resources: [{ key: 'sx/k', mode: 'shared' }] })).status, 'granted');
    const w = await tryOnce({ owner: 'w', resources: ['sx/k'] });
    assert.equal(w.status, 'busy');
    if (w.status === 'busy') assert.deepEqual(w.holders.map((h) => h.owner).sort(), ['r1', 'r2']);
    assert.equal((await tryOnce({ owner: 'e', resources: ['sx/e'] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 'e2', resources: [{ key: 'sx/e', mode: 'shared' }] })).status, 'busy');
  });

  test('path locks: operations on sibling keys under one root run at once; on the key, an ancestor or a descendant they wait', async () => {
    // An open transaction holds the path locks of pl/a/b (pl and pl/a shared, pl/a/b exclusive), as
    // a lean acquire or release of that key does while it runs.
    const held = await holdPath(schema, 'pl/a/b');
    const settled = (p: Promise<unknown>): Promise<boolean> => Promise.race([p.then(() => true), sleep(300).then(() => false)]);
    let waiting: Array<Promise<AcquireOutcome>> = [];
    try {
      // Siblings and cousins: granted while the path is held.
      for (const key of ['pl/a/c', 'pl/b', 'pl/c/d']) assert.equal((await tryOnce({ owner: 'sib', resources: [key] })).status, 'granted', key);
      // The key itself, a descendant, an ancestor, the root, a request under the root that takes
      // the full path (shared): each waits for the transaction.
      waiting = ['pl/a/b', 'pl/a/b/c', 'pl/a', 'pl'].map((key) => tryOnce({ owner: 'rel', resources: [key] }));
      waiting.push(tryOnce({ owner: 'full', resources: [{ key: 'pl/z', mode: 'shared' }] }));
      for (const [i, p] of waiting.entries()) assert.equal(await settled(p), false, `request ${i} did not wait for the path locks`);
    } finally {
      await held.release();
    }
    const statuses = (await Promise.all(waiting)).map((o) => o.status);
    // Once free, each is decided against what is held then: pl/a and pl conflict with the granted
    // siblings, one of pl/a/b and pl/a/b/c gets in first and the other is busy, and the shared
    // pl/z conflicts with nothing held.
    assert.deepEqual(statuses.slice(2), ['busy', 'busy', 'granted'], JSON.stringify(statuses));
    assert.deepEqual(statuses.slice(0, 2).sort(), ['busy', 'granted'], JSON.stringify(statuses));
  });

  test('ancestors and descendants conflict unless both are shared; siblings never', async () => {
    assert.equal((await tryOnce({ owner: 'a', resources: ['tree/apps/42/task'] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 'b', resources: ['tree/apps/42'] })).status, 'busy');
    assert.equal((await tryOnce({ owner: 'b', resources: [{ key: 'tree/apps', mode: 'shared' }] })).status, 'busy');
    assert.equal((await tryOnce({ owner: 'b', resources: ['tree/apps/42/task/sub'] })).status, 'busy');
    assert.equal((await tryOnce({ owner: 'c', resources: ['tree/apps/42/backup'] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 'c', resources: ['tree/apps/4'] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 'c', resources: ['tree/apps/42task'] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 's1', resources: [{ key: 'tree2/p', mode: 'shared' }] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 's2', resources: [{ key: 'tree2/p/d', mode: 'shared' }] })).status, 'granted');
    assert.equal((await tryOnce({ owner: 's3', resources: ['tree2/p/d/x'] })).status, 'busy');
  });

  test('semaphore limits count holders and earlier waiters; a different limit is rejected', async () => {
    const sem = (owner: string, limit = 2): RequestInput => ({ owner, resources: [{ key: 'sem/k', mode: 'shared', limit }] });
    assert.equal((await tryOnce(sem('s1'))).status, 'granted');
    assert.equal((await tryOnce(sem('s2'))).status, 'granted');
    const third = await tryOnce(sem('s3'));
    assert.equal(third.status, 'busy');
    if (third.status === 'busy') assert.equal(third.holders.length, 2);
    await assert.rejects(tryOnce(sem('s4', 3)), (e: unknown) => {
      assert.ok(e instanceof InvalidRequestError);
      assert.equal(e.field, 'resources[0].limit');
      assert.match(e.reason, /limit 2/);
      return true;
    });
    await assert.rejects(
      tryOnce({ owner: 's5', resources: ['sem/other', { key: 'sem/k', mode: 'shared' }] }),
      (e: unknown) => e instanceof InvalidRequestError && e.field === 'resources[1].limit',
    );
  });

  test('all or nothing: a multi-resource request holds nothing while blocked', async () => {
    const held = request({ owner: 'h', resources: ['multi/b'] });
    assert.equal((await suite.store.acquire(held, once)).status, 'granted');
    const both = request({ owner: 'm', resources: ['multi/a', 'other-root/c', 'multi/b'] });
    const out = await suite.store.acquire(both, wait);
    assert.equal(out.status, 'queued');
    // Nothing of it is held: the free keys are still free for others.
    assert.equal((await tryOnce({ owner: 'x', resources: ['other-root/c/deep'] })).status, 'busy'); // queued waiter blocks
    assert.equal((await suite.store.list({ prefix: 'multi/' })).locks.length, 1);
    assert.equal(await suite.store.release(held.id), true);
    const granted = await suite.store.poll(both.id);
    assert.equal(granted.status, 'granted');
    if (granted.status === 'granted') assert.equal(granted.lease.resources.length, 3);
  });

  test('FIFO: many queued waiters are granted in queue order, a try-once request never jumps the queue', async () => {
    const first = request({ owner: 'holder', resources: ['fifo/k'] });
    assert.equal((await suite.store.acquire(first, once)).status, 'granted');
    const waiters = Array.from({ length: 20 }, (_, i) =>
      request({ owner: `w${i}`, resources: i % 3 === 0 ? ['fifo/k/sub'] : ['fifo/k'] }),
    );
    for (const w of waiters) assert.equal((await suite.store.acquire(w, wait)).status, 'queued');
    const table = await suite.store.list({ prefix: 'fifo/k' });
    assert.deepEqual(table.waiters.filter((w) => w.key === 'fifo/k').map((w) => w.position), [...Array(13).keys()].map((i) => i + 1));
    // The key is free of holders after this release only for the first waiter.
    const jumper = await tryOnce({ owner: 'jumper', resources: ['fifo/k/sub/deeper'] });
    assert.equal(jumper.status, 'busy');
    if (jumper.status === 'busy') assert.ok(jumper.holders.some((h) => h.state === 'queued'));

    const order: string[] = [];
    let current = first.id;
    for (let i = 0; i < waiters.length; i++) {
      assert.equal(await suite.store.release(current), true);
      // Exactly one waiter (the next in queue order) was granted by the release.
      const states = await Promise.all(waiters.map((w) => suite.store.poll(w.id)));
      const granted = waiters.filter((_, j) => states[j]!.status === 'granted');
      assert.equal(granted.length, 1);
      order.push(granted[0]!.owner);
      current = granted[0]!.id;
    }
    assert.deepEqual(order, waiters.map((w) => w.owner));
    await suite.store.release(current);
  });

  test('a later shared request waits behind a queued exclusive one (no writer starvation)', async () => {
    assert.equal((await tryOnce({ owner: 'r', resources: [{ key: 'starve/k', mode: 'shared' }] })).status, 'granted');
    const writer = request({ owner: 'w', resources: ['starve/k'] });
    assert.equal((await suite.store.acquire(writer, wait)).status, 'queued');
    const reader = await tryOnce({ owner: 'r2', resources: [{ key: 'starve/k', mode: 'shared' }] });
    assert.equal(reader.status, 'busy');
    if (reader.status === 'busy') assert.deepEqual(reader.holders.map((h) => [h.owner, h.state]), [['w', 'queued']]);
  });

  test('expiry by the suite.store clock: an expired lease confers nothing, the next grant has a higher fence', async () => {
    const a = request({ owner: 'a', resources: ['exp/k'], ttlMs: 800 });
    const out = await suite.store.acquire(a, once);
    assert.equal(out.status, 'granted');
    const b = request({ owner: 'b', resources: ['exp/k'] });
    assert.equal((await suite.store.acquire(b, wait)).status, 'queued');
    await sleep(1000);
    assert.equal(await suite.store.get(a.id), null);
    assert.equal((await suite.store.renew(a.id, 1000)).status, 'lost');
    assert.equal(await suite.store.release(a.id), false);
    const granted = await suite.store.poll(b.id);
    assert.equal(granted.status, 'granted');
    if (granted.status === 'granted' && out.status === 'granted') assert.ok(granted.lease.fence > out.lease.fence);
    const events = await suite.store.history({ key: 'exp/k', limit: 3 });
    assert.deepEqual(events.map((e) => e.type), ['acquired', 'expired', 'acquired']);
  });

  test('lock-delay after expiry and after a forced release, not after a normal release', async () => {
    const a = request({ owner: 'a', resources: ['delay/k'], ttlMs: 150, lockDelayMs: 1500 });
    assert.equal((await suite.store.acquire(a, once)).status, 'granted');
    await sleep(250);
    const blocked = await tryOnce({ owner: 'b', resources: ['delay/k/sub'] });
    assert.equal(blocked.status, 'busy');
    if (blocked.status === 'busy') assert.equal(blocked.holders[0]!.state, 'delayed');
    await sleep(1500);
    const free = request({ owner: 'b', resources: ['delay/k'], lockDelayMs: 60_000 });
    assert.equal((await suite.store.acquire(free, once)).status, 'granted');
    assert.equal(await suite.store.forceRelease('delay/k', { by: 'ops' }), 1);
    assert.equal((await tryOnce({ owner: 'c', resources: ['delay/k'] })).status, 'busy');

    const n = request({ owner: 'n', resources: ['delay/n'], lockDelayMs: 60_000 });
    assert.equal((await suite.store.acquire(n, once)).status, 'granted');
    assert.equal(await suite.store.release(n.id), true);
    assert.equal((await tryOnce({ owner: 'c', resources: ['delay/n'] })).status, 'granted');
  });

  test('a waiter that stops polling is dropped and frees the queue', async () => {
    const a = request({ owner: 'a', resources: ['dead/k'] });
    assert.equal((await suite.store.acquire(a, once)).status, 'granted');
    const dead = request({ owner: 'dead', resources: ['dead/k'] });
    assert.equal((await suite.store.acquire(dead, { waitMs: 60_000, waiterTtlMs: 200 })).status, 'queued');
    const live = request({ owner: 'live', resources: ['dead/k'] });
    assert.equal((await suite.store.acquire(live, wait)).status, 'queued');
    await sleep(300);
    assert.equal(await suite.store.release(a.id), true);
    assert.equal((await suite.store.poll(dead.id)).status, 'gone');
    assert.equal((await suite.store.poll(live.id)).status, 'granted');
  });
});
