/**
 * Spawned by the `scale` suite as `node --expose-gc scale-child.js MODE COUNT`: holds COUNT locks
 * on a fresh memory store and prints `{ count, heapBytes }` (the heap growth, after full GCs).
 *
 *   grant     `locks.grant()`: only the store's records (what a server holding leases for remote
 *             clients keeps)
 *   acquire   `locks.acquire()`: plus a self-renewing `Lease` object and its timer per lock
 */
import { openLocks } from '../src/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

function heapUsed(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const [mode = 'grant', countText = '1000'] = process.argv.slice(2);
const count = Number(countText);
const locks = await openLocks('memory:', { owner: 'bench-scale' });
// One lock first, so lazily created structures are not counted per lock.
const warm = await locks.grant('warm', { ttlMs: 3_600_000 });
const before = heapUsed();
// Nothing is kept here: the store keeps its records, the `Locks` object its `Lease` objects.
for (let i = 0; i < count; i++) {
  const key = `fill/k${i}`;
  if (mode === 'acquire') await locks.acquire(key, { ttlMs: 3_600_000 });
  else await locks.grant(key, { ttlMs: 3_600_000 });
}
const after = heapUsed();
const held = (await locks.list({ prefix: 'fill/' })).locks.length;
process.stdout.write(`${JSON.stringify({ mode, count, held, heapBytes: after - before, warm: warm.lease.fence })}\n`);
await locks.close({ release: false });
