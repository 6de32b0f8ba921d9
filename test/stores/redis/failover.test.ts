/**
 * Failover to a replica (a private primary and replica the test starts): with `replicas: 1`
 * every grant is acknowledged by the replica before it is answered, so the promoted replica
 * holds it; a grant the replica cannot acknowledge is released and fails. Without WAIT a grant
 * the replica never got is lost on promotion, and the next fence is still higher than its fence.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openLocks, openStore } from '../../../src/index.js';
import { eventually, rejectsWith } from '../../conformance/helpers.js';
import { command, PrivateRedis } from './server.js';

const TIMEOUT = { timeout: 60_000 } as const;

async function pair(): Promise<{ primary: PrivateRedis; replica: PrivateRedis }> {
  const primary = new PrivateRedis({ appendfsync: null });
  await primary.start();
  const replica = new PrivateRedis({ appendfsync: null, replicaOf: primary.port });
  await replica.start();
  await eventually(async () => assert.match(String(await command(replica.url, ['INFO', 'replication'])), /master_link_status:up/), 10_000, 50);
  return { primary, replica };
}

describe('Redis failover to a replica', () => {
  it('with replicas: 1 the promoted replica has every granted lease, and fences go on rising', TIMEOUT, async () => {
    const { primary, replica } = await pair();
    try {
      const locks = await openLocks(`${primary.url}?prefix=failover`, { owner: 'a', storeOptions: { replicas: 1, replicaTimeoutMs: 2000 } });
      const lease = await locks.acquire('job', { ttlMs: 60_000 });
      await primary.kill();
      await drop(locks);
      await command(replica.url, ['REPLICAOF', 'NO', 'ONE']);
      const promoted = await openLocks(`${replica.url}?prefix=failover`, { owner: 'b' });
      try {
        const held = (await promoted.list()).locks.find((l) => l.key === 'job');
        assert.equal(held?.fence, lease.fence, 'the promoted replica holds the lease');
        assert.equal(await promoted.tryAcquire('job'), null);
        const next = await promoted.acquire('other');
        assert.ok(next.fence > lease.fence);
        await next.release();
      } finally {
        await promoted.close();
      }
    } finally {
      await primary.destroy();
      await replica.destroy();
    }
  });

  it('a grant the replica does not acknowledge in time is released and fails with STORE_UNAVAILABLE', TIMEOUT, async () => {
    const { primary, replica } = await pair();
    try {
      replica.pause();
      const locks = await openLocks(`${primary.url}?prefix=failover`, { owner: 'a', storeOptions: { replicas: 1, replicaTimeoutMs: 200 } });
      try {
        await rejectsWith(locks.acquire('job'), 'STORE_UNAVAILABLE');
        assert.deepEqual((await locks.list()).locks, [], 'the unacknowledged lease was released');
      } finally {
        await locks.close();
      }
    } finally {
      replica.resume();
      await primary.destroy();
      await replica.destroy();
    }
  });

  it('without WAIT a grant made after the replica was cut off is lost on promotion; the next fence is still higher', TIMEOUT, async () => {
    const { primary, replica } = await pair();
    try {
      // A partition: the replica is promoted while clients still reach the old primary.
      await command(replica.url, ['REPLICAOF', 'NO', 'ONE']);
      const locks = await openLocks(`${primary.url}?prefix=failover`, { owner: 'a' });
      const lease = await locks.acquire('job', { ttlMs: 60_000 });
      await primary.kill();
      await drop(locks);
      const promoted = await openLocks(`${replica.url}?prefix=failover`, { owner: 'b' });
      try {
        assert.deepEqual((await promoted.list()).locks, [], 'the lease never reached the promoted replica');
        const again = await promoted.acquire('job');
        assert.ok(again.fence > lease.fence, `fence ${again.fence} after promotion is above the lost ${lease.fence}`);
        await again.release();
      } finally {
        await promoted.close();
      }
    } finally {
      await primary.destroy();
      await replica.destroy();
    }
  });

  it('with replicas: 1 the old primary of a partition grants nothing', TIMEOUT, async () => {
    const { primary, replica } = await pair();
    try {
      await command(replica.url, ['REPLICAOF', 'NO', 'ONE']);
      const locks = await openLocks(`${primary.url}?prefix=failover`, { owner: 'a', storeOptions: { replicas: 1, replicaTimeoutMs: 200 } });
      try {
        await rejectsWith(locks.acquire('job'), 'STORE_UNAVAILABLE');
        assert.deepEqual((await locks.list()).locks, []);
      } finally {
        await locks.close();
      }
    } finally {
      await primary.destroy();
      await replica.destroy();
    }
  });
});

async function drop(locks: { store: { close(): Promise<void> }; close(): Promise<void> }): Promise<void> {
  await locks.store.close().catch(() => {});
  await locks.close().catch(() => {});
}
