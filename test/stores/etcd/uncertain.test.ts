/**
 * Calls whose outcome is unknown (the transaction reached etcd and committed, but the answer was
 * lost: a timeout, a dropped connection, a leader change after the proposal). The store must not
 * resend them blindly: it reads the table again and decides again, so a grant is made once, a
 * queued ticket is queued once, and the history shows each event once. The loss is simulated by
 * letting the transaction through and then throwing `EtcdCallError(maybeApplied: true)` in place
 * of its answer.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { openStore } from '../../../src/engine/open.js';
import type { LockRequest } from '../../../src/model/types.js';
import { EtcdCallError, EtcdClient } from '../../../src/stores/etcd/client.js';
import type { LockStore } from '../../../src/stores/store.js';
import { clusterUnavailable, EtcdCluster } from './cluster.js';

const unavailable = clusterUnavailable();
if (unavailable && process.env['CI']) throw new Error(`CI needs etcd for the etcd store tests: ${unavailable}`);

const request = (id: string, owner: string, key: string): LockRequest => ({
  id, owner, resources: [{ key, mode: 'exclusive', limit: null }], ttlMs: 30_000, requestId: null, metadata: {}, lockDelayMs: 0,
});

describe('etcd store: answers lost after the commit', { skip: unavailable ?? false }, () => {
  let cluster: EtcdCluster;
  const stores: LockStore[] = [];
  const original = EtcdClient.prototype.txn;
  let prefixes = 0;

  before(async () => {
    cluster = await EtcdCluster.start();
  });
  afterEach(() => {
    EtcdClient.prototype.txn = original;
  });
  after(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    await cluster?.destroy();
  });

  /** A store object on the test's prefix (`again`: another object on the same prefix). */
  async function open(again = false): Promise<LockStore> {
    if (!again) prefixes++;
    const store = await openStore(cluster.url, { prefix: `uncertain-${prefixes}/` });
    stores.push(store);
    return store;
  }

  /** The next `count` writing transactions commit, but their answers are lost. */
  function loseAnswers(count: number): { lost: number } {
    const state = { lost: 0 };
    EtcdClient.prototype.txn = async function (this: EtcdClient, ...args: Parameters<EtcdClient['txn']>) {
      const result = await original.apply(this, args);
      if (result.succeeded && args[1].length > 0 && state.lost < count) {
        state.lost++;
        throw new EtcdCallError('the answer was lost (simulated)', true);
      }
      return result;
    };
    return state;
  }

  test('an acquire whose grant committed answers with that grant, made once', async () => {
    const store = await open();
    const losses = loseAnswers(1);
    const outcome = await store.acquire(request('lease-1', 'a', 'u/key'), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(losses.lost, 1, 'no answer was lost');
    assert.equal(outcome.status, 'granted');
    assert.equal(outcome.status === 'granted' && outcome.lease.id, 'lease-1');
    const history = await store.history({});
    assert.deepEqual(history.map((e) => e.type), ['acquired']);
    assert.equal((await store.list()).locks.length, 1);
  });

  test('a queued acquire whose ticket committed stays queued once, and is granted once', async () => {
    const store = await open();
    const held = await store.acquire(request('held', 'a', 'u/q'), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(held.status, 'granted');
    loseAnswers(1);
    const queued = await store.acquire(request('waiter', 'b', 'u/q'), { waitMs: 10_000, waiterTtlMs: 3000 });
    assert.equal(queued.status, 'queued');
    assert.equal(queued.status === 'queued' && queued.ticket, 'waiter');
    assert.equal((await store.list()).waiters.length, 1);
    assert.equal(await store.release('held'), true);
    const polled = await store.poll('waiter');
    assert.equal(polled.status, 'granted');
    const fences = (await store.history({})).filter((e) => e.type === 'acquired').map((e) => e.fence);
    assert.equal(new Set(fences).size, 2, `fences ${fences.join(', ')}`);
  });

  test('a release whose commit answer was lost leaves the lease released and the next grant correct', async () => {
    const store = await open();
    const other = await open(true);
    const first = await store.acquire(request('r1', 'a', 'u/r'), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(first.status, 'granted');
    loseAnswers(1);
    await store.release('r1');
    EtcdClient.prototype.txn = original;
    assert.equal(await store.get('r1'), null);
    const next = await other.acquire(request('r2', 'b', 'u/r'), { waitMs: 0, waiterTtlMs: 3000 });
    assert.equal(next.status, 'granted');
    const types = (await other.history({})).map((e) => e.type).reverse();
    assert.deepEqual(types, ['acquired', 'released', 'acquired']);
  });
});
