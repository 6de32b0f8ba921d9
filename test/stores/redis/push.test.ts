/**
 * Push hand-off on Redis: a grant reaches its waiter in another process through that process's
 * inbox stream, a killed inbox connection loses no wake-up, and a grant wakes only its own
 * waiters. Each test has its own namespace on the shared Redis.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createClient } from '@redis/client';
import { openLocks, type Locks, type StoreChange } from '../../../src/index.js';
import { redisNamespace, type RedisNamespace } from '../../conformance/redis-backend.js';
import { eventually, sleep } from '../../conformance/helpers.js';

const SHARED = process.env['HOLDFAST_REDIS_URL'] ?? 'redis://127.0.0.1:6379/0';
const CHILD = fileURLToPath(new URL('./waiter-child.js', import.meta.url));

describe('Redis push hand-off', () => {
  const namespaces: RedisNamespace[] = [];
  const opened: Locks[] = [];
  const open = async (ns: RedisNamespace, owner: string): Promise<Locks> => {
    const locks = await openLocks(ns.url, { owner, waiterTtlMs: 60_000 });
    opened.push(locks);
    return locks;
  };
  const namespace = (): RedisNamespace => {
    const ns = redisNamespace(SHARED);
    namespaces.push(ns);
    return ns;
  };
  after(async () => {
    await Promise.allSettled(opened.map((l) => l.close()));
    await Promise.allSettled(namespaces.map((n) => n.drop()));
  });

  it('a grant reaches a waiter in another process at once (its heartbeat is 20 s away)', { timeout: 30_000 }, async () => {
    const ns = namespace();
    const holder = await open(ns, 'parent');
    const lease = await holder.acquire('job', { ttlMs: 30_000 });
    const child = spawn(process.execPath, [CHILD, ns.url, 'job'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await eventually(() => assert.match(out, /queued/), 10_000);
    await sleep(100); // the child's first poll-free wait has begun
    const releasedAt = Date.now();
    await lease.release();
    assert.equal(await exited, 0);
    const match = /granted (\d+) (\d+)/.exec(out);
    assert.ok(match, `the child printed ${JSON.stringify(out)}`);
    assert.ok(Number(match[1]) > lease.fence, 'the waiter got a higher fence');
    const latency = Number(match[2]) - releasedAt;
    assert.ok(latency < 2000, `granted ${latency} ms after the release`);
  });

  it('a killed inbox connection (CLIENT KILL) loses no wake-up', { timeout: 30_000 }, async () => {
    const ns = namespace();
    const holder = await open(ns, 'holder');
    const waiter = await open(ns, 'waiter');
    const lease = await holder.acquire('k', { ttlMs: 30_000 });
    const waiting = waiter.acquire('k', { waitMs: 20_000 });
    const admin = createClient({ url: SHARED });
    admin.on('error', () => {});
    await admin.connect();
    try {
      // The waiter's inbox connection is the one blocked in XREAD on its namespace.
      const id = await eventually(async () => {
        const list = String(await admin.sendCommand(['CLIENT', 'LIST']));
        const name = `name=holdfast-inbox:${new URL(ns.url).searchParams.get('prefix')} `;
        const line = list.split('\n').find((l) => l.includes(name) && / cmd=xread /.test(l));
        assert.ok(line, 'no XREAD connection yet');
        return /id=(\d+)/.exec(line)![1]!;
      }, 10_000);
      await admin.sendCommand(['CLIENT', 'KILL', 'ID', id]);
      const started = Date.now();
      await lease.release();
      const granted = await waiting;
      assert.ok(Date.now() - started < 3000, 'woken after the inbox reconnected');
      await granted.release();
    } finally {
      await admin.close();
    }
  });

  it('a grant wakes only its own waiters', { timeout: 30_000 }, async () => {
    const ns = namespace();
    const holder = await open(ns, 'holder');
    const onX = await open(ns, 'x-waiter');
    const onY = await open(ns, 'y-waiter');
    const seenByY: StoreChange[] = [];
    onY.store.watch((change) => {
      if (change.granted.length > 0) seenByY.push(change);
    });
    const x = await holder.acquire('x', { ttlMs: 30_000 });
    const y = await holder.acquire('y', { ttlMs: 30_000 });
    const waitX = onX.acquire('x', { waitMs: 20_000 });
    const waitY = onY.acquire('y', { waitMs: 20_000 });
    await eventually(async () => assert.equal((await holder.list()).waiters.length, 2));
    await x.release();
    const gotX = await waitX;
    await sleep(200);
    assert.equal(seenByY.length, 0, 'the waiter of y heard nothing of the grant of x');
    await y.release();
    const gotY = await waitY;
    assert.deepEqual(seenByY.map((c) => c.granted), [[gotY.id]]);
    await gotX.release();
    await gotY.release();
  });
});
