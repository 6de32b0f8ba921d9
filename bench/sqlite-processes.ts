// Hand-off between two processes on one SQLite file: this process holds a key, a child process
// (this same file, `child` argument) waits for it through `Locks`; after a random pause of 0 to
// HOLD-MS ms (default 3) the holder releases, and the child reports when its wait returned. Both read the clock as
// `performance.timeOrigin + performance.now()` (the same machine clock), so the sample is release()
// called → the other process's acquire() returned. Prints p50/p99/max over the hand-offs after 50
// warm-up ones, how many polls the waiting process sent, and how much CPU it used (of one core,
// over the whole run: with a long HOLD-MS, mostly the cost of waiting).
//   npm run build && node dist/bench/sqlite-processes.js [HAND-OFFS, default 500] [HOLD-MS, default 3]
// The file is a fresh one in a temporary folder, removed at the end.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openLocks } from '../src/index.js';
import { createSqliteStore } from '../src/stores/sqlite/store.js';
import { CallCounter, CountingStore } from './counting.js';
import { summarize } from './harness.js';

const KEY = 'bench/handoff';
const WARMUP = 50;
const clock = (): number => performance.timeOrigin + performance.now();
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The waiting process: on each `wait` line, waits for the key and prints `granted <time> <polls>`, then releases. */
async function child(file: string): Promise<void> {
  const store = createSqliteStore(file);
  const calls = new CallCounter();
  // A long waiter TTL: heartbeats every 10 s, so a poll here is a poll for news.
  const locks = await openLocks(new CountingStore(store, calls, { closeInner: false }), { owner: 'waiter', waiterTtlMs: 30_000 });
  const startedAt = performance.now();
  const cpu = process.cpuUsage();
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'cpu') {
      const used = process.cpuUsage(cpu);
      process.stdout.write(`cpu ${((used.user + used.system) / 1000 / (performance.now() - startedAt)) * 100}\n`);
      continue;
    }
    if (line !== 'wait') break;
    const waiting = locks.acquire(KEY, { waitMs: 10_000 });
    while ((await store.list()).waiters.length === 0) await pause(1);
    process.stdout.write('queued\n');
    const lease = await waiting;
    process.stdout.write(`granted ${clock()} ${calls.byMethod.get('poll') ?? 0}\n`);
    await lease.release();
  }
  await locks.close();
  await store.close();
}

async function parent(handoffs: number, holdMs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-bench-sqlite-'));
  const file = join(dir, 'handoff.db');
  const store = createSqliteStore(file);
  const locks = await openLocks(store, { owner: 'holder' });
  const waiter = fork(new URL(import.meta.url).pathname, ['child', file], { stdio: ['pipe', 'pipe', 'inherit', 'ipc'] });
  const lines = createInterface({ input: waiter.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const { value, done } = await lines.next();
    if (done === true) throw new Error('the waiting process ended');
    return value as string;
  };
  const samples: number[] = [];
  let polls = 0;
  let cpu = NaN;
  try {
    for (let i = 0; i < handoffs + WARMUP; i++) {
      const lease = await locks.acquire(KEY);
      waiter.stdin!.write('wait\n');
      if ((await next()) !== 'queued') throw new Error('expected queued');
      await pause(Math.random() * holdMs);
      const releasedAt = clock();
      await lease.release();
      const [word, grantedAt, polled] = (await next()).split(' ');
      if (word !== 'granted') throw new Error(`expected granted, got ${String(word)}`);
      if (i >= WARMUP) samples.push(Number(grantedAt) - releasedAt);
      polls = Number(polled);
      // The waiter releases after reporting: wait for the key to be free before taking it again.
      while ((await store.list()).locks.length > 0) await pause(1);
    }
    waiter.stdin!.write('cpu\n');
    cpu = Number((await next()).split(' ')[1]);
  } finally {
    waiter.stdin!.end();
    await new Promise((resolve) => waiter.once('exit', resolve));
    await locks.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const s = summarize(samples);
  console.log(`sqlite, hand-off to another process after 0..${holdMs} ms: ${s.n} hand-offs, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(2)} ms; the waiting process polled ${polls} times in all and used ${cpu.toFixed(2)}% of a core`);
}

if (process.argv[2] === 'child') await child(process.argv[3]!);
else await parent(Number(process.argv[2] ?? 500), Number(process.argv[3] ?? 3));
