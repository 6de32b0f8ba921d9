/**
 * The Redis store's own surface: URL and option checks, what `info` says, every key under the
 * namespace's hash tag, the library loaded again after Redis lost it, an unreachable server.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createClient } from '@redis/client';
import { openLocks, openStore } from '../../../src/index.js';
import { freePort } from '../postgres/cluster.js';
import { redisNamespace, type RedisNamespace } from '../../conformance/redis-backend.js';
import { rejectsWith } from '../../conformance/helpers.js';
import { PrivateRedis } from './server.js';

const SHARED = process.env['HOLDFAST_REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';

describe('Redis store basics', () => {
  const namespaces: RedisNamespace[] = [];
  after(() => Promise.allSettled(namespaces.map((n) => n.drop())));

  it('rejects bad URLs and options, naming the field', async () => {
    const bad = async (url: string, field: string, options: Record<string, unknown> = {}): Promise<void> => {
      const error = await rejectsWith(openStore(url, options), 'INVALID_REQUEST');
      assert.match(error.message, new RegExp(field.replace(/[.[\]]/g, '\\$&')));
    };
    await bad('redis://127.0.0.1:6379/0?prefix=a{b}', 'url.prefix');
    await bad('redis://127.0.0.1:6379/0?prefix=', 'url.prefix');
    await bad('redis://127.0.0.1:6379/0?schema=x', 'url.schema');
    await bad('redis://127.0.0.1:6379/0', 'options.replicas', { replicas: -1 });
    await bad('redis://127.0.0.1:6379/0', 'options.historyLimit', { historyLimit: 'many' });
    await bad('redis://127.0.0.1:6379/0', 'options.colour', { colour: 'red' });
    await bad('redis://127.0.0.1:6379/0', 'options.connections', { connections: 0 });
    await bad('redis://127.0.0.1:6379/0', 'options.connections', { connections: 17 });
  });

  it('spreads operations issued together over its connections, each named holdfast:<prefix>', async () => {
    const ns = redisNamespace(SHARED);
    namespaces.push(ns);
    const prefix = new URL(ns.url).searchParams.get('prefix')!;
    const locks = await openLocks(ns.url, { owner: 'a', storeOptions: { connections: 3 } });
    const admin = createClient({ url: SHARED });
    await admin.connect();
    try {
      const leases = await Promise.all(Array.from({ length: 30 }, (_, i) => locks.acquire(`spread/${i}`)));
      const mine = String(await admin.sendCommand(['CLIENT', 'LIST', 'TYPE', 'normal']))
        .split('\n').filter((line) => line.includes(` name=holdfast:${prefix} `));
      assert.equal(mine.length, 3, mine.join('\n'));
      for (const line of mine) assert.match(line, / cmd=fcall /, `every connection ran an operation: ${line}`);
      await Promise.all(leases.map((lease) => lease.release()));
      assert.equal((await locks.list()).locks.length, 0);
    } finally {
      await admin.close();
      await locks.close();
    }
  });

  it('an unreachable Redis fails with STORE_UNAVAILABLE within connectTimeoutMs', async () => {
    const port = await freePort();
    const started = performance.now();
    await rejectsWith(openStore(`redis://127.0.0.1:${port}/0`, { connectTimeoutMs: 300 }), 'STORE_UNAVAILABLE');
    assert.ok(performance.now() - started < 3000);
  });

  it('reports its kind and push wake-ups; every key it writes is under its hash tag', async () => {
    const ns = redisNamespace(SHARED);
    namespaces.push(ns);
    const prefix = new URL(ns.url).searchParams.get('prefix')!;
    const locks = await openLocks(ns.url, { owner: 'a', waiterTtlMs: 3000 });
    const admin = createClient({ url: SHARED });
    await admin.connect();
    try {
      assert.deepEqual(locks.store.info, { kind: 'redis', durable: false, wakeups: 'complete' });
      const lease = await locks.acquire([{ key: 'a/b', mode: 'shared', limit: 2 }, 'c'], { lockDelayMs: 500, metadata: { n: [] } });
      assert.deepEqual((await locks.store.get(lease.id))?.metadata, { n: [] }, 'metadata kept as sent (empty arrays too)');
      const waiting = locks.acquire('a', { waitMs: 5000 });
      await locks.forceRelease('c');
      const forcedAt = Date.now();
      const next = await waiting;
      assert.ok(Date.now() - forcedAt >= 400, 'granted after the lock-delay of the forced lease');
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = (await admin.sendCommand(['SCAN', cursor, 'MATCH', `*${prefix}*`, 'COUNT', '1000'])) as [string, string[]];
        keys.push(...batch);
        cursor = next;
      } while (cursor !== '0');
      assert.ok(keys.length > 5, `keys written: ${keys.join(', ')}`);
      for (const key of keys) assert.ok(key.startsWith(`hf:{${prefix}}:`), `${key} is under the hash tag`);
      await next.release();
    } finally {
      await admin.close();
      await locks.close();
    }
  });

  it('expires a lease that ends before every other due time, and one whose bound meta lost', async () => {
    // The library reads a due set only when meta's lower bound on it has passed: a shorter lease
    // must lower that bound, and a bound that is gone (an older layout, a lost key) means "read it".
    const ns = redisNamespace(SHARED);
    namespaces.push(ns);
    const prefix = new URL(ns.url).searchParams.get('prefix')!;
    const owner = await openLocks(ns.url, { owner: 'a', autoRenew: false });
    const other = await openLocks(ns.url, { owner: 'b' });
    const admin = createClient({ url: SHARED });
    await admin.connect();
    try {
      const long = await owner.acquire('long', { ttlMs: 60_000 });
      await owner.acquire('short', { ttlMs: 300 });
      await new Promise((resolve) => setTimeout(resolve, 400));
      const taken = await other.acquire('short');
      await taken.release();
      await owner.acquire('short2', { ttlMs: 300 });
      await admin.hDel(`hf:{${prefix}}:meta`, ['lo:lexp', 'lo:wdue', 'lo:ddue']);
      await new Promise((resolve) => setTimeout(resolve, 400));
      const taken2 = await other.acquire('short2');
      await taken2.release();
      assert.equal(long.state, 'held');
      await long.release();
    } finally {
      await admin.close();
      await other.close();
      await owner.close({ release: false });
    }
  });

  it('lists queued holders from their summaries, and from the waiter records where a summary is missing', async () => {
    const ns = redisNamespace(SHARED);
    namespaces.push(ns);
    const prefix = new URL(ns.url).searchParams.get('prefix')!;
    const a = await openLocks(ns.url, { owner: 'a' });
    const b = await openLocks(ns.url, { owner: 'b ünï,code' });
    const c = await openLocks(ns.url, { owner: 'c' });
    const admin = createClient({ url: SHARED });
    await admin.connect();
    try {
      const held = await a.acquire('q');
      const waiting = b.acquire('q', { waitMs: 10_000, metadata: { why: 'after a, with a comma' } });
      while ((await a.list({ prefix: 'q' })).waiters.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const queuedHolder = async (): Promise<unknown> => {
        const error = await rejectsWith(c.acquire('q'), 'LOCK_BUSY');
        return (error as unknown as { holders: Array<{ state: string; owner: string; metadata: unknown }> }).holders
          .filter((h) => h.state === 'queued').map((h) => ({ owner: h.owner, metadata: h.metadata }));
      };
      const expected = [{ owner: 'b ünï,code', metadata: { why: 'after a, with a comma' } }];
      assert.deepEqual(await queuedHolder(), expected);
      await admin.del(`hf:{${prefix}}:wh`);
      assert.deepEqual(await queuedHolder(), expected, 'read from the waiter record');
      await held.release();
      await (await waiting).release();
    } finally {
      await admin.close();
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  it('loads its library again when Redis lost it (FUNCTION FLUSH, a restart without persistence)', { timeout: 30_000 }, async () => {
    const server = new PrivateRedis({ appendfsync: null });
    await server.start();
    try {
      const locks = await openLocks(server.url, { owner: 'a' });
      const admin = createClient({ url: server.url });
      await admin.connect();
      try {
        await admin.sendCommand(['FUNCTION', 'FLUSH']);
        const lease = await locks.acquire('k');
        assert.ok(lease.fence > 0);
        await lease.release();
      } finally {
        await admin.close();
        await locks.close();
      }
    } finally {
      await server.destroy();
    }
  });
});
