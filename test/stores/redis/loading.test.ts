/**
 * A Redis that has just started answers LOADING while it replays its AOF. Opening the store then
 * waits for the dataset, within `connectTimeoutMs`, and fails with STORE_UNAVAILABLE saying so
 * after that; a lease granted before the restart is still there (AOF `always`).
 *
 * The replay is made slow on purpose with Redis's own test setting `key-load-delay`. Redis answers
 * clients only between batches of 1,024 replayed commands, so the delay is small and the keys many:
 * `-5` sleeps 1 µs at one key in five (a sleep costs ~80 µs here), which makes a batch ~20 ms and
 * 300,000 padding keys about six seconds of LOADING on the development machine. (A delay of 100 µs
 * made a batch ~150 ms: the handshake alone then took more than a 300 ms timeout on a loaded CI.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HoldfastError } from '../../../src/model/errors.js';
import { openLocks } from '../../../src/index.js';
import { command, PrivateRedis } from './server.js';

const TIMEOUT = { timeout: 60_000 } as const;
const SLOW_REPLAY = ['--key-load-delay', '-5', '--loading-process-events-interval-bytes', '1024'];
const PADDING_KEYS = 300_000;
/** Far longer than the handshake takes while loading, far shorter than the load. */
const IMPATIENT_MS = 1500;

describe('Redis store: opening while Redis loads its dataset', () => {
  const server = new PrivateRedis({ appendfsync: 'always' });
  let url = '';
  let keptFence = 0;

  before(async () => {
    await server.start();
    url = `${server.url}?prefix=loading`;
    const locks = await openLocks(url, { owner: 'before' });
    try {
      keptFence = (await locks.acquire('kept', { ttlMs: 600_000 })).fence;
    } finally {
      await locks.store.close(); // the lease stays: a crash, not a release
      await locks.close().catch(() => {});
    }
    await command(server.url, ['EVAL', `for i = 1, ${PADDING_KEYS} do redis.call('SET', 'pad:' .. i, 'x') end return 1`, '0']);
  });
  after(() => server.destroy());

  /** Kills Redis and starts it again, returning once it answers (LOADING). */
  async function restartLoading(): Promise<void> {
    await server.kill();
    await server.start({ args: SLOW_REPLAY, loading: true });
    await assert.rejects(command(server.url, ['PING']), /LOADING/, 'Redis is loading');
  }

  it('fails with STORE_UNAVAILABLE naming connectTimeoutMs when the load outlasts it', TIMEOUT, async () => {
    await restartLoading();
    const started = Date.now();
    await assert.rejects(
      openLocks(url, { owner: 'impatient', storeOptions: { connectTimeoutMs: IMPATIENT_MS } }),
      (error: unknown) => {
        assert.ok(error instanceof HoldfastError);
        assert.equal(error.code, 'STORE_UNAVAILABLE');
        assert.match(error.message, new RegExp(`still loading its dataset after ${IMPATIENT_MS} ms \\(connectTimeoutMs\\)`));
        assert.match(String((error.cause as Error | undefined)?.message), /^LOADING/);
        return true;
      },
    );
    assert.ok(Date.now() - started < IMPATIENT_MS + 1500, 'it gave up near its timeout');
  });

  it('waits for the dataset within connectTimeoutMs, then works with the leases it kept', TIMEOUT, async () => {
    await restartLoading();
    const locks = await openLocks(url, { owner: 'after', storeOptions: { connectTimeoutMs: 30_000 } });
    try {
      assert.equal(await command(server.url, ['PING']), 'PONG', 'opened only once Redis had loaded');
      const kept = (await locks.list()).locks.find((lock) => lock.key === 'kept');
      assert.equal(kept?.fence, keptFence, 'the lease granted before the restart is there');
      assert.equal(await locks.tryAcquire('kept'), null, 'and still excludes others');
      const fresh = await locks.acquire('fresh', { ttlMs: 10_000 });
      assert.ok(fresh.fence > keptFence);
      await fresh.release();
    } finally {
      await locks.close();
    }
  });
});
