/**
 * `scale`: does acquiring get slower as the table grows? Acquire latency p50/p99 (of a fresh,
 * free key; `Locks.acquire` with default options, release not timed) with 0, 10,000 and 100,000
 * other locks held, on memory and on SQLite (`synchronous: 'NORMAL'`, so the table's size, not
 * the fsync, is what shows; quick mode stops SQLite at 10,000). And what a held lock costs:
 *
 *   memory   heap growth / locks held, in a child process run with --expose-gc, after full GCs,
 *            for `grant()` (store records only) and `acquire()` (plus `Lease` objects and timers)
 *   sqlite   file growth (database + WAL, checkpointed) / locks held; includes the lease, its key
 *            row, their indexes and the history event of each grant
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { HOLDFAST, pick, type BenchContext, type StoreKind } from '../harness.js';
import { openTarget, storesOf } from '../stores.js';

const run = promisify(execFile);
const HOUR = 3_600_000;

function fileBytes(file: string): number {
  const db = new Database(file, { timeout: 5000 });
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  let bytes = 0;
  for (const suffix of ['', '-wal']) {
    try {
      bytes += statSync(file + suffix).size;
    } catch {
      // no WAL file
    }
  }
  return bytes;
}

async function heapPerLock(mode: 'grant' | 'acquire', count: number): Promise<number> {
  const child = fileURLToPath(new URL('../scale-child.js', import.meta.url));
  const { stdout } = await run(process.execPath, ['--expose-gc', child, mode, String(count)], { timeout: 300_000 });
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { heapBytes: number; held: number };
  if (result.held !== count) throw new Error(`scale child held ${result.held} locks, expected ${count}`);
  return result.heapBytes / count;
}

export async function scaleSuite(ctx: BenchContext): Promise<void> {
  const suite = 'scale';
  const probes = pick(ctx, { full: 3000, quick: 500, smoke: 3 });
  const levels: Record<'memory' | 'sqlite', number[]> = pick(ctx, {
    full: { memory: [0, 10_000, 100_000], sqlite: [0, 10_000, 100_000] },
    quick: { memory: [0, 10_000, 100_000], sqlite: [0, 10_000] },
    smoke: { memory: [0, 50], sqlite: [0, 50] },
  });
  for (const kind of storesOf(ctx, ['memory', 'sqlite'] as StoreKind[]) as ('memory' | 'sqlite')[]) {
    const target = await openTarget(ctx, kind, kind === 'sqlite' ? { synchronous: 'NORMAL' } : {});
    try {
      const locks = await target.open({ ttlMs: HOUR });
      let held = 0;
      let probe = 0;
      let grown = 0; // file growth during the fills only (the probes' history is not counted)
      for (const level of levels[kind]) {
        const fillStart = performance.now();
        const before = target.file && level > held ? fileBytes(target.file) : 0;
        for (; held < level; held++) await locks.grant(`fill/k${held}`, { ttlMs: HOUR });
        if (before > 0) grown += fileBytes(target.file!) - before;
        if (level > 0) ctx.log(`  ${kind}: ${level.toLocaleString('en-US')} held (filled in ${((performance.now() - fillStart) / 1000).toFixed(1)} s)`);
        const latencies: number[] = [];
        for (let i = 0; i < Math.min(100, probes); i++) await (await locks.acquire(`warm/k${probe++}`)).release(); // warm-up
        for (let i = 0; i < probes; i++) {
          const t0 = performance.now();
          const lease = await locks.acquire(`probe/k${probe++}`);
          latencies.push(performance.now() - t0);
          await lease.release();
        }
        const label = kind === 'sqlite' ? 'sqlite (NORMAL)' : kind;
        ctx.rec.latency({ suite, case: `${label}, ${level.toLocaleString('en-US')} held`, subject: HOLDFAST }, latencies);
      }
      if (target.file && held > 0) {
        const perLock = grown / held;
        ctx.rec.add({ suite, case: `sqlite, ${held.toLocaleString('en-US')} held`, subject: HOLDFAST, metric: 'file bytes/held lock', value: perLock, unit: 'B', n: held });
      }
    } finally {
      await target.close();
    }
    if (kind === 'memory') {
      const count = pick(ctx, { full: 100_000, quick: 10_000, smoke: 1000 });
      for (const mode of ['grant', 'acquire'] as const) {
        const perLock = await heapPerLock(mode, count);
        ctx.rec.add({ suite, case: `memory, ${count.toLocaleString('en-US')} held`, subject: HOLDFAST, metric: `heap bytes/held lock (${mode})`, value: perLock, unit: 'B', n: count });
      }
    }
  }
}
