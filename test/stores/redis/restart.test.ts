/**
 * Redis killed with `kill -9` and restarted, for each persistence setting (a private
 * redis-server per test on a free port): fences never repeat or go back, even when AOF
 * `everysec` loses the last second; with `appendfsync always` the leases survive; without
 * persistence everything is lost and nothing is granted twice. The README states the same.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openLocks, type Lease, type Locks } from '../../../src/index.js';
import { PrivateRedis } from './server.js';

const TIMEOUT = { timeout: 60_000 } as const;

/** Crash semantics: the store connection goes first, so nothing is released on the way out. */
async function drop(locks: Locks): Promise<void> {
  await locks.store.close().catch(() => {});
  await locks.close().catch(() => {});
}

/** Grants and releases `rounds` leases as fast as one client can, then one more it keeps. */
async function churn(locks: Locks, rounds: number): Promise<{ fences: number[]; kept: Lease }> {
  const fences: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const lease = await locks.acquire(`churn/${i % 8}`, { ttlMs: 60_000 });
    fences.push(lease.fence);
    await lease.release();
  }
  const kept = await locks.acquire('kept', { ttlMs: 60_000 });
  fences.push(kept.fence);
  return { fences, kept };
}

function assertIncreasing(fences: number[]): void {
  for (let i = 1; i < fences.length; i++) assert.ok(fences[i]! > fences[i - 1]!, `fence ${i} (${fences[i]}) is above ${fences[i - 1]}`);
}

for (const appendfsync of ['everysec', 'always', null] as const) {
  const label = appendfsync === null ? 'no persistence' : `AOF appendfsync ${appendfsync}`;
  describe(`Redis kill -9 and restart (${label})`, () => {
    it('fences never repeat; leases survive exactly when the setting keeps them', TIMEOUT, async () => {
      const server = new PrivateRedis({ appendfsync });
      await server.start();
      try {
        const url = `${server.url}?prefix=restart`;
        const before = await openLocks(url, { owner: 'before' });
        assert.equal(before.store.info.durable, appendfsync === 'always', 'info.durable: AOF with fsync always');
        const { fences, kept } = await churn(before, 300);
        assertIncreasing(fences);
        await server.kill(); // right after the last grant: everysec has not fsynced it yet
        await drop(before);
        await server.start();

        const after = await openLocks(url, { owner: 'after' });
        try {
          const next = await after.acquire('fresh', { ttlMs: 10_000 });
          assert.ok(next.fence > Math.max(...fences), `the first fence after the restart (${next.fence}) is above every earlier one`);
          const held = (await after.list()).locks.find((l) => l.key === 'kept');
          if (appendfsync === 'always') {
            assert.equal(held?.fence, kept.fence, 'the kept lease survived with its fence');
            assert.equal(await after.tryAcquire('kept'), null, 'and still excludes others');
            assert.notEqual(await after.store.get(kept.id), null);
          } else if (appendfsync === null) {
            assert.equal(held, undefined, 'without persistence the lease is gone with Redis');
          }
          if (held === undefined) {
            // Lost (or never fsynced): granted again, with a fence above the lost one.
            const again = await after.acquire('kept', { ttlMs: 10_000 });
            assert.ok(again.fence > kept.fence);
            await again.release();
          }
          await next.release();
        } finally {
          await after.close();
        }
      } finally {
        await server.destroy();
      }
    });
  });
}
