/**
 * The etcd store across a network partition (a private 3-member cluster whose peer ports are
 * behind proxies, peer-proxy.ts): the leader is cut off from the other two members while a
 * client holds a lease and another waits. The majority elects a new leader, the client that was
 * talking to the cut member moves on, the lease is kept (it is renewed through the majority), the
 * waiter is handed the lock after the release, and nothing is granted twice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openLocks } from '../../../src/engine/open.js';
import type { Locks } from '../../../src/engine/locks.js';
import { clusterUnavailable, EtcdCluster } from './cluster.js';

const unavailable = clusterUnavailable();
if (unavailable && process.env['CI']) throw new Error(`CI needs etcd for the etcd store tests: ${unavailable}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('etcd store: a member cut off from the others', { skip: unavailable ?? false }, () => {
  let cluster: EtcdCluster;
  const opened: Locks[] = [];

  before(async () => {
    cluster = await EtcdCluster.start({ partitionable: true });
  });
  after(async () => {
    await Promise.allSettled(opened.map((l) => l.close()));
    await cluster?.destroy();
  });

  test('the leader cut off: a new one is elected, the lease holds, the waiter gets it after the release', async () => {
    let leader = await cluster.leader();
    for (let i = 0; leader === null && i < 100; i++) leader = (await sleep(50), await cluster.leader());
    assert.ok(leader, 'no leader');
    // Clients start on the cut member: it must be left for the majority.
    const url = `etcd://127.0.0.1:${leader.clientPort},${cluster.members.filter((m) => m !== leader).map((m) => `127.0.0.1:${m.clientPort}`).join(',')}`;
    const open = async (owner: string): Promise<Locks> => {
      const locks = await openLocks(url, { owner, waiterTtlMs: 5000, storeOptions: { prefix: 'partition/', requestTimeoutMs: 500 } });
      opened.push(locks);
      return locks;
    };
    const a = await open('a');
    const b = await open('b');
    const held = await a.acquire('pt/key', { ttlMs: 3000 });
    const waiting = b.acquire('pt/key', { waitMs: 30_000 });
    for (let i = 0; (await a.list()).waiters.length === 0; i++) {
      assert.ok(i < 200, 'the waiter never queued');
      await sleep(10);
    }
    cluster.cut(leader);
    try {
      // Longer than the TTL: the lease lives only if its renewals reach the majority.
      await sleep(4000);
      assert.equal(held.state, 'held', `the lease was ${held.state} while the leader was cut off`);
      const after = await cluster.leader();
      assert.ok(after !== null && after !== leader, 'the majority elected no other leader');
      assert.equal(await held.release(), true);
      const next = await waiting;
      assert.ok(next.fence > held.fence);
      assert.equal((await a.list()).locks.length, 1);
      await next.release();
    } finally {
      cluster.heal(leader);
    }
  });
});
