/**
 * Fenced writes to a Redis resource (`fencedSetRedis`) with fences from the Redis store: a
 * holder whose lease expired while it was paused is refused after the next holder wrote.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { createClient } from '@redis/client';
import { fencedSetRedis, openLocks, type RedisEvalLike } from '../../../src/index.js';
import { redisNamespace } from '../../conformance/redis-backend.js';
import { sleep } from '../../conformance/helpers.js';

const SHARED = process.env['HOLDFAST_REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';

it('a paused holder whose lease expired is refused by the fenced write', { timeout: 30_000 }, async () => {
  const ns = redisNamespace(SHARED);
  after(() => ns.drop());
  const client = createClient({ url: SHARED });
  await client.connect();
  // node-redis through the eval shape the helper takes (ioredis has it natively).
  const redis: RedisEvalLike = {
    eval: (script, numKeys, ...args) => client.sendCommand(['EVAL', script, String(numKeys), ...args.map(String)]),
  };
  const key = `hf-fenced-test:${new URL(ns.url).searchParams.get('prefix')}`;
  const locks = await openLocks(ns.url, { owner: 'a' });
  try {
    const first = await locks.store.acquire(
      { id: 'aaaaaaaaaaaaaaaaaaaaaa', owner: 'a', resources: [{ key: 'res', mode: 'exclusive', limit: null }], ttlMs: 200, requestId: null, metadata: {}, lockDelayMs: 0 },
      { waitMs: 0, waiterTtlMs: 3000 },
    );
    assert.equal(first.status, 'granted');
    if (first.status !== 'granted') return;
    await sleep(300); // the first holder is paused past its TTL
    const second = await locks.acquire('res', { ttlMs: 10_000 });
    assert.ok(second.fence > first.lease.fence);
    assert.deepEqual(await fencedSetRedis(redis, { key, fence: second.fence, value: 'second' }), { accepted: true, value: 'second', fence: second.fence });
    assert.deepEqual(await fencedSetRedis(redis, { key, fence: first.lease.fence, value: 'stale' }), { accepted: false, highestFence: second.fence });
    assert.equal(await client.get(key), 'second');
    await second.release();
  } finally {
    await client.del([key, `${key}:fence`]);
    await client.close();
    await locks.close();
  }
});
