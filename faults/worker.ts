/**
 * A worker process of the fault harness (started by main.ts, one per slot; a killed one is
 * replaced by a fresh process under a new name). Until SIGTERM it loops:
 *
 *   acquire a random request (one leaf exclusive or shared, two leaves, or a whole root; waitMs 0
 *   or 100..3000) -> think -> fenced write of every leaf it covers -> (shared: hold, write again)
 *   -> hold -> release (unless the lease was lost: then it is left to expire).
 *
 * The write is attempted even when the lease was lost meanwhile (a SIGSTOP past the TTL fires
 * `lost` on waking): the register must refuse it if a newer holder wrote. Every invocation and
 * completion goes to stdout as one JSON line (synchronous on a pipe, so a SIGKILL loses nothing
 * already recorded). Config: one JSON argument (`WorkerConfig`).
 */
import { openLocks } from '../src/engine/open.js';
import type { Lease } from '../src/engine/lease.js';
import { HoldfastError } from '../src/model/errors.js';
import type { Mode, Resource } from '../src/model/types.js';
import { between, clock, pick, rng, sharedLimitOf, type WorkerEvent } from './history.js';
import { Register } from './register.js';

export interface WorkerConfig {
  name: string;
  store: string;
  storeOptions: Record<string, unknown>;
  registerUrl: string;
  registerSchema: string;
  leaves: string[];
  roots: string[];
  ttlMs: number;
  waiterTtlMs: number;
  seed: number;
}

type Body = WorkerEvent extends infer E ? (E extends unknown ? Omit<E, 'w' | 't'> : never) : never;

const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
const random = rng(config.seed);
const out = (event: Body): void => {
  process.stdout.write(`${JSON.stringify({ w: config.name, t: clock(), ...event })}\n`);
};

const stop = new AbortController();
process.on('SIGTERM', () => stop.abort(new Error('stopping')));
const parent = process.ppid;

// A ref'd interval: keeps the loop alive while a wait sleeps on unref'd timers, measures stalls of
// the event loop (a blocking SQLite busy wait, a SIGSTOP), and exits if the harness is gone.
let tick = performance.now();
const monitor = setInterval(() => {
  const now = performance.now();
  if (now - tick > 150) out({ type: 'stall', ms: now - tick });
  tick = now;
  if (process.ppid !== parent) process.exit(3);
}, 50);

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    if (stop.signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      stop.signal.removeEventListener('abort', done);
      resolve();
    }
    stop.signal.addEventListener('abort', done);
  });

let seq = 0;
const nextOp = (): string => `${config.name}#${++seq}`;
const message = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

function pickRequest(): { resources: Resource[]; waitMs: number } {
  const { leaves, roots } = config;
  const resource = (key: string, shared: boolean): Resource =>
    shared ? { key, mode: 'shared', limit: sharedLimitOf(leaves, key) } : { key, mode: 'exclusive', limit: null };
  const x = random();
  let resources: Resource[];
  if (x < 0.08) resources = [resource(pick(random, roots), false)];
  else if (x < 0.23 && leaves.length > 1) {
    const first = between(random, 0, leaves.length - 1);
    const second = (first + between(random, 1, leaves.length - 1)) % leaves.length;
    resources = [resource(leaves[first]!, random() < 0.3), resource(leaves[second]!, random() < 0.3)];
  } else resources = [resource(pick(random, leaves), x < 0.45)];
  return { resources, waitMs: random() < 0.15 ? 0 : between(random, 100, 3000) };
}

/** The register keys a lease covers, with its mode on each: a root covers every leaf under it. */
function writable(lease: Lease): Array<{ key: string; mode: Mode }> {
  return lease.resources.flatMap((r) =>
    config.leaves.includes(r.key) ? [{ key: r.key, mode: r.mode }] : config.leaves.filter((l) => l.startsWith(`${r.key}/`)).map((key) => ({ key, mode: r.mode })),
  );
}

const register = new Register(config.registerUrl, config.registerSchema);
/**
 * Opens the store, trying again for a while when it is unavailable: a worker started while the
 * store restarts (Redis answering `LOADING` while it reads its AOF) comes up once the store does,
 * as a service would. The harness counts a worker that exits on its own as a violation.
 */
async function openWithRetry(): Promise<Awaited<ReturnType<typeof openLocks>>> {
  const until = performance.now() + 30_000;
  for (let delay = 100; ; delay = Math.min(1000, delay * 2)) {
    try {
      return await openLocks(config.store, {
        owner: config.name, ttlMs: config.ttlMs, waiterTtlMs: config.waiterTtlMs, storeOptions: config.storeOptions,
      });
    } catch (error) {
      if (!(error instanceof HoldfastError && error.code === 'STORE_UNAVAILABLE') || performance.now() + delay > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
const locks = await openWithRetry();
locks.on('lost', (lease, error) => out({ type: 'lost', fence: lease.fence, reason: error.message }));
const live = (lease: Lease): boolean => lease.state === 'held' && lease.remainingMs > 0;

async function write(lease: Lease, leaseOp: string, key: string, mode: Mode): Promise<void> {
  const op = nextOp();
  out({ type: 'invoke', f: 'write', op, lease: leaseOp, fence: lease.fence, key, mode, live: live(lease) });
  try {
    const result = await register.write({ key, fence: lease.fence, mode, writer: config.name, lease: leaseOp, op });
    const after = live(lease);
    if (result.accepted) out({ type: 'ok', f: 'write', op, seq: result.seq, live: after });
    else out({ type: 'fail', f: 'write', op, highest: result.highest, live: after });
  } catch (error) {
    out({ type: 'info', f: 'write', op, message: message(error) });
  }
}

async function once(): Promise<void> {
  const { resources, waitMs } = pickRequest();
  const op = nextOp();
  out({ type: 'invoke', f: 'acquire', op, resources, waitMs, ttlMs: config.ttlMs });
  let lease: Lease;
  try {
    lease = await locks.acquire(resources, { waitMs, signal: stop.signal });
  } catch (error) {
    const code = error instanceof HoldfastError ? error.code : stop.signal.aborted ? 'ABORTED' : 'ERROR';
    // Busy and timed out are definite; anything else may have been granted after all.
    if (code === 'LOCK_BUSY' || code === 'WAIT_TIMEOUT' || code === 'ABORTED') out({ type: 'fail', f: 'acquire', op, code, message: message(error) });
    else out({ type: 'info', f: 'acquire', op, message: `${code} ${message(error)}` });
    await sleep(between(random, 10, code === 'STORE_UNAVAILABLE' || code === 'ERROR' ? 300 : 60));
    return;
  }
  out({ type: 'ok', f: 'acquire', op, fence: lease.fence, expiresAt: lease.expiresAt.getTime() });
  const keys = writable(lease);
  await sleep(between(random, 10, 150));
  if (!stop.signal.aborted) for (const { key, mode } of keys) await write(lease, op, key, mode);
  const shared = keys.filter((k) => k.mode === 'shared');
  if (shared.length > 0 && !stop.signal.aborted) {
    await sleep(between(random, 5, 100));
    for (const { key, mode } of shared) await write(lease, op, key, mode);
  }
  await sleep(between(random, 5, 150));
  if (lease.state !== 'held') {
    out({ type: 'skip-release', lease: op, fence: lease.fence, state: lease.state });
    return;
  }
  const release = nextOp();
  out({ type: 'invoke', f: 'release', op: release, lease: op, fence: lease.fence });
  try {
    out({ type: 'ok', f: 'release', op: release, released: await lease.release() });
  } catch (error) {
    out({ type: 'info', f: 'release', op: release, message: message(error) });
  }
}

out({ type: 'ready', pid: process.pid });
while (!stop.signal.aborted) await once();
await locks.close();
await register.close();
clearInterval(monitor);
out({ type: 'exit' });
process.exit(0);
