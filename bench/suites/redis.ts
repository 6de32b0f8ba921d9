/**
 * `redis`: holdfast's Redis store against the locks Node users take on Redis today
 * (`bench/redis-anchors.ts`: redis-semaphore's Mutex, @sesamecare-oss/redlock on one instance,
 * redlock-universal), on the same Redis (HOLDFAST_REDIS_URL, default 127.0.0.1:6379/0), under a
 * prefix of this run's that is deleted afterwards (`npm run bench -- redis`):
 *
 *   pairs        uncontended acquire+release pairs/s and pair latency, 1 and 32 in flight, each
 *                caller on its own key; and two FCALLs of a no-op function as a floor (FLOOR)
 *   hand-off     release → the next holder's acquire returns, p50/p99, with 1 and 100 waiters on
 *                one key, each client its own connection (its own "process"); a holder releases
 *                once every other client waits (holdfast: queued in the store; a poller: in its
 *                acquire for longer than its retry interval, so it has tried and sleeps)
 *   contention   10, then 500 clients (4 connections) loop acquire+release on one key for a while:
 *                grants/s, fairness (Jain's index of grants per client, 1 = equal), and per grant:
 *                requests sent (holdfast: its store's FCALLs and XREADs in INFO commandstats; the
 *                others: counted on their ioredis connections), Redis commands (those run inside
 *                scripts included) and Redis CPU (INFO stats and cpu before and after)
 *
 * Issue 15's targets (`redisTargets`): pairs/s ≥ 1.2× redis-semaphore and redlock at 1 and 32 in
 * flight, hand-off p99 ≤ 2 ms, O(1) requests per hand-off with 500 waiters (at most 1.5× those
 * with 10).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { openLocks, type Locks } from '../../src/index.js';
import { holdfastHandoffSubject, measureForeignHandoff, type HandoffSubject } from '../foreign-handoff.js';
import { compare, HOLDFAST, pick, SkipError, summarize, type BenchContext, type Row } from '../harness.js';
import { anchorLock, ANCHORS, RETRY_MS, type AnchorLock, type AnchorName } from '../redis-anchors.js';
import { latencyBelow, ratioAtLeast } from '../targets.js';

const URL_ = process.env['HOLDFAST_REDIS_URL'] || 'redis://127.0.0.1:6379/0';
const CONNECTIONS = 4;

async function reachable(): Promise<Redis> {
  const redis = new Redis(URL_, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
    return redis;
  } catch (error) {
    redis.disconnect();
    throw new SkipError(`redis at ${URL_} is unreachable: ${(error as Error).message}`);
  }
}

/** The commands holdfast's store sends (its library calls none of them inside, so their counts are its requests). */
const STORE_REQUESTS = ['fcall', 'fcall_ro', 'xread', 'wait'];

/** Redis work so far (server-wide; the run has Redis to itself): commands, those run in scripts included, holdfast's requests, CPU µs. */
async function redisWork(admin: Redis): Promise<{ commands: number; storeRequests: number; cpuUs: number }> {
  const info = await admin.info('all');
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  const calls = (command: string): number => Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return {
    commands: field('total_commands_processed'),
    storeRequests: STORE_REQUESTS.reduce((sum, c) => sum + calls(c), 0),
    cpuUs: (field('used_cpu_sys') + field('used_cpu_user')) * 1e6,
  };
}

/** Counts what an ioredis connection sends (every command goes through `sendCommand`). */
function counted(redis: Redis, counter: { requests: number }): Redis {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
    counter.requests++;
    return send(...args);
  }) as Redis['sendCommand'];
  return redis;
}

function jain(counts: readonly number[]): number {
  const sum = counts.reduce((a, b) => a + b, 0);
  const squares = counts.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 0 : (sum * sum) / (counts.length * squares);
}

export async function redisSuite(ctx: BenchContext): Promise<void> {
  const suite = 'redis';
  const admin = await reachable();
  const prefix = `bench-${randomBytes(4).toString('hex')}`;
  const url = `${URL_}${URL_.includes('?') ? '&' : '?'}prefix=${prefix}`;
  const opened: Locks[] = [];
  const connections: Redis[] = [];
  const openHoldfast = async (owner: string): Promise<Locks> => {
    const locks = await openLocks(url, { owner });
    opened.push(locks);
    return locks;
  };
  const connect = (): Redis => {
    const redis = new Redis(URL_);
    connections.push(redis);
    return redis;
  };
  try {
    ctx.rec.meta['redis'] = (/^redis_version:(\S+)/m.exec(await admin.info('server'))?.[1]) ?? 'unknown';
    await pairs(ctx, suite, await openHoldfast('bench'), connect(), prefix);
    await handoffs(ctx, suite, openHoldfast, connect, prefix);
    await contention(ctx, suite, openHoldfast, connect, admin, prefix);
  } finally {
    await Promise.allSettled(opened.map((l) => l.close()));
    for (const redis of connections) redis.disconnect();
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    admin.disconnect();
  }
}

/**
 * The floor of any lock with one round trip per operation: a "pair" of two FCALLs of a function
 * that does nothing (a library of the run's, deleted afterwards), on the anchors' connection.
 * At 1 in flight no such lock does much better than its pairs/s (a lock that beats it clearly
 * needs fewer round trips).
 */
const FLOOR = 'no-op FCALL pair';

async function pairs(ctx: BenchContext, suite: string, locks: Locks, redis: Redis, prefix: string): Promise<void> {
  const timing = pick(ctx, {
    full: { repeats: 3, warmupMs: 1000, durationMs: 3000 },
    quick: { repeats: 1, warmupMs: 300, durationMs: 1000 },
    smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
  });
  const anchors = ANCHORS.map((name) => ({ name, lock: anchorLock(name, redis) }));
  const library = `holdfast_bench_${prefix.replace(/\W/g, '_')}`;
  const noop = `${library}_noop`;
  await redis.call('FUNCTION', 'LOAD', `#!lua name=${library}\nredis.register_function('${noop}', function() return 1 end)`);
  try {
    for (const inFlight of [1, 32]) {
      await compare(ctx, suite, `pairs, ${inFlight} in flight`, [
        { name: HOLDFAST, op: async (w) => (await locks.acquire(`pairs/c${w}`, { ttlMs: 10_000 })).release() },
        ...anchors.map(({ name, lock }) => ({ name, op: async (w: number) => (await lock(`${prefix}:${name}:c${w}`, false))() })),
        {
          name: FLOOR,
          op: async (w: number) => {
            await redis.call('FCALL', noop, '1', `${prefix}:floor:c${w}`);
            await redis.call('FCALL', noop, '1', `${prefix}:floor:c${w}`);
          },
        },
      ], { ...timing, concurrency: inFlight, latency: true });
    }
  } finally {
    await redis.call('FUNCTION', 'DELETE', library).catch(() => {});
  }
}

/** Clients of a poller in their acquire: since when, so the holder can wait until each has tried once. */
function pollerSubject(name: AnchorName, connect: () => Redis, prefix: string): HandoffSubject {
  const waitingSince = new Map<number, number>();
  return {
    name,
    open: async (i) => {
      const lock = anchorLock(name, connect());
      return {
        lock: async (key) => {
          waitingSince.set(i, performance.now());
          try {
            return await lock(`${prefix}:${name}:${key}`, true);
          } finally {
            waitingSince.delete(i);
          }
        },
        close: async () => {},
      };
    },
    queued: async () => {
      const settled = performance.now() - RETRY_MS[name] * 1.2;
      return [...waitingSince.values()].filter((since) => since <= settled).length;
    },
  };
}

async function handoffs(ctx: BenchContext, suite: string, open: (owner: string) => Promise<Locks>, connect: () => Redis, prefix: string): Promise<void> {
  const budget = pick(ctx, {
    full: { warmup: 20, samples: 400, timeMs: 8000 },
    quick: { warmup: 5, samples: 100, timeMs: 2000 },
    smoke: { warmup: 0, samples: 2, timeMs: 500 },
  });
  const holdfast = holdfastHandoffSubject(open, 60_000);
  const subjects = [holdfast, ...ANCHORS.map((name) => pollerSubject(name, connect, prefix))];
  for (const waiters of pick(ctx, { full: [1, 100], quick: [1, 100], smoke: [1, 3] })) {
    const caseName = `hand-off, ${waiters} waiter${waiters === 1 ? '' : 's'}`;
    for (const subject of subjects) {
      await ctx.rec.guard(suite, `${caseName} / ${subject.name}`, ctx.log, async () => {
        const samples = await measureForeignHandoff(subject, waiters, budget);
        ctx.rec.latency({ suite, case: caseName, subject: subject.name }, samples);
        ctx.log(`  ${caseName} / ${subject.name}: ${samples.length} hand-offs, p99 ${summarize(samples).p99.toFixed(2)} ms`);
      });
    }
  }
}

async function contention(
  ctx: BenchContext, suite: string, open: (owner: string) => Promise<Locks>, connect: () => Redis, admin: Redis, prefix: string,
): Promise<void> {
  const { counts, durationMs } = pick(ctx, {
    full: { counts: [10, 500], durationMs: 10_000 },
    quick: { counts: [10, 500], durationMs: 3000 },
    smoke: { counts: [3, 20], durationMs: 300 },
  });
  const holdfastLocks = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => open(`c${i}`)));
  const lockers: Array<{ name: string; lock: AnchorLock; requests: { requests: number } | null }> = [
    {
      name: HOLDFAST,
      requests: null,
      lock: async (key) => {
        const lease = await holdfastLocks[Math.floor(Math.random() * CONNECTIONS)]!.acquire(key, { waitMs: 600_000, ttlMs: 60_000 });
        return async () => void (await lease.release());
      },
    },
    ...ANCHORS.map((name) => {
      const requests = { requests: 0 };
      const pool = Array.from({ length: CONNECTIONS }, () => anchorLock(name, counted(connect(), requests)));
      return { name, requests, lock: (key: string, wait: boolean) => pool[Math.floor(Math.random() * CONNECTIONS)]!(`${prefix}:${name}:${key}`, wait) };
    }),
  ];
  for (const clients of counts) {
    const caseName = `contention, ${clients} clients on one key`;
    for (const locker of lockers) await contend(ctx, suite, caseName, clients, durationMs, locker, admin);
  }
}

async function contend(
  ctx: BenchContext, suite: string, caseName: string, clients: number, durationMs: number,
  { name, lock, requests }: { name: string; lock: AnchorLock; requests: { requests: number } | null }, admin: Redis,
): Promise<void> {
  await ctx.rec.guard(suite, `${caseName} / ${name}`, ctx.log, async () => {
    const grants = new Array<number>(clients).fill(0);
    let stop = false;
    const before = await redisWork(admin);
    const sentBefore = requests?.requests ?? 0;
    const started = performance.now();
    setTimeout(() => (stop = true), durationMs).unref();
    await Promise.all(grants.map(async (_, c) => {
      while (!stop) {
        const release = await lock('contended', true);
        if (!stop) grants[c]!++;
        await release();
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const after = await redisWork(admin);
    const total = grants.reduce((a, b) => a + b, 0);
    const sent = requests ? requests.requests - sentBefore : after.storeRequests - before.storeRequests;
    const base = { suite, case: caseName, subject: name, n: clients };
    ctx.rec.add({ ...base, metric: 'grants/s', value: total / seconds, unit: 'ops/s' });
    ctx.rec.add({ ...base, metric: 'fairness (Jain)', value: jain(grants), unit: 'index' });
    ctx.rec.add({ ...base, metric: 'clients never granted', value: grants.filter((g) => g === 0).length, unit: 'clients' });
    ctx.rec.add({ ...base, metric: 'requests/grant', value: sent / Math.max(1, total), unit: 'calls' });
    ctx.rec.add({ ...base, metric: 'Redis commands/grant', value: (after.commands - before.commands) / Math.max(1, total), unit: 'calls' });
    ctx.rec.add({ ...base, metric: 'Redis CPU/grant', value: (after.cpuUs - before.cpuUs) / Math.max(1, total), unit: 'µs' });
    ctx.log(`  ${caseName} / ${name}: ${(total / seconds).toFixed(0)} grants/s, ${(sent / Math.max(1, total)).toFixed(1)} requests/grant`);
  });
}

/** Where holdfast and the anchors stand against the no-op pair (FLOOR), in pairs/s. */
function floorLine(rows: readonly Row[], caseName: string): string | null {
  const rate = (subject: string) => rows.find((r) => r.suite === 'redis' && r.case === caseName && r.subject === subject && r.metric === 'pairs/s')?.value;
  const floor = rate(FLOOR);
  if (floor === undefined || floor === 0) return null;
  const of = [HOLDFAST, ...ANCHORS].map((s) => [s, rate(s)] as const).filter((e): e is readonly [string, number] => e[1] !== undefined);
  return `  (${caseName}, against two no-op FCALLs, ${Math.round(floor)} pairs/s: ${of.map(([s, v]) => `${s} ${(v / floor).toFixed(2)}×`).join(', ')})`;
}

/** Issue 15's targets, checked against this run's rows. */
export function redisTargets(rows: readonly Row[]): string[] {
  const out: Array<string | null> = [];
  for (const inFlight of [1, 32]) {
    for (const anchor of ['redis-semaphore', 'redlock']) out.push(ratioAtLeast(rows, 'redis', `pairs, ${inFlight} in flight`, anchor, 1.2));
    out.push(floorLine(rows, `pairs, ${inFlight} in flight`));
  }
  for (const waiters of ['1 waiter', '100 waiters']) out.push(latencyBelow(rows, 'redis', `hand-off, ${waiters}`, 'p99', 2, `redis hand-off, ${waiters}`, true));
  // O(1): with 500 clients waiting, no more requests per grant than with 10 (up to 1.5x for noise).
  const perGrant = (subject: string) => rows
    .filter((r) => r.suite === 'redis' && r.subject === subject && r.metric === 'requests/grant' && r.case.startsWith('contention'))
    .sort((a, b) => (a.n ?? 0) - (b.n ?? 0));
  const mine = perGrant(HOLDFAST);
  if (mine.length >= 2) {
    const [few, many] = [mine[0]!, mine.at(-1)!];
    const growth = many.value / few.value;
    const others = ANCHORS.map((a) => perGrant(a)).filter((r) => r.length >= 2).map((r) => `${r[0]!.subject} ${r[0]!.value.toFixed(1)} -> ${r.at(-1)!.value.toFixed(1)}`);
    out.push(`- redis requests per grant, ${few.n} -> ${many.n} clients on one key: holdfast ${few.value.toFixed(1)} -> ${many.value.toFixed(1)} (${growth.toFixed(2)}x; target O(1), at most 1.5x): ${
      growth <= 1.5 ? 'met' : 'MISSED'}${others.length > 0 ? `; ${others.join(', ')}` : ''}`);
  }
  return out.filter((line): line is string => line !== null);
}
