/**
 * `handoff`: release → next waiter granted, p50/p99, with 1 and 100 waiters on one key, on every
 * store of the run, for holdfast's queue (push wake-ups) against two waiters that loop over
 * `tryAcquire`: every 10 ms, and with node-redlock's default retry timing.
 *
 * Clients alternate between two `Locks` objects on two store objects (two "processes"; on
 * Postgres the waiter of the other object learns of its grant through LISTEN/NOTIFY). A holder
 * releases only once every other client is waiting (holdfast: queued in the store; pollers:
 * after a failed attempt), after a random 0..phase ms so pollers' retries fall at random
 * phases; the sample is the time from just before `release()` to the moment the next holder's
 * wait returns. A client that released waits for the next grant before it queues again, so it
 * never barges back in.
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { queueWait, waitStrategies, type WaitStrategy } from '../anchors.js';
import { HOLDFAST, Notifier, pick, sleep, summarize, type BenchContext, type StoreKind } from '../harness.js';
import { openTarget, storesOf, type Target } from '../stores.js';

export interface HandoffBudget {
  /** Hand-offs first made and not measured: fresh pooled connections, plans and JIT warming up. */
  warmup: number;
  /** Stop after this many measured hand-offs... */
  samples: number;
  /** ...or after this long. */
  timeMs: number;
}

export function handoffBudget(ctx: BenchContext): HandoffBudget {
  return pick(ctx, {
    full: { warmup: 100, samples: 600, timeMs: 8000 },
    quick: { warmup: 50, samples: 150, timeMs: 1000 },
    smoke: { warmup: 0, samples: 2, timeMs: 1000 },
  });
}

export interface HandoffResult {
  /** release() called → the next holder's wait returned (ms). */
  latencies: number[];
  /** How long the releasing `release()` call took (ms): the rest of a hand-off is waking the waiter and its poll. */
  releases: number[];
  /** The latencies of hand-offs between clients of the same `Locks` object (one process)... */
  sameProcess: number[];
  /** ...and between clients of the two objects (another process: LISTEN, a watcher, a watch). */
  otherProcess: number[];
}

/**
 * Hand-off latencies with `waiters` clients waiting behind the holder. The budget's time starts
 * when the queue is complete and the warm-up hand-offs are done (setting up 100 waiters does not
 * eat it).
 */
export async function measureHandoff(target: Target, strategy: WaitStrategy, waiters: number, budget: HandoffBudget): Promise<HandoffResult> {
  const clients = waiters + 1;
  const onWaiting = new Map<string, () => void>();
  const observe = (outcome: { status: string }, request: { owner: string }): void => {
    if (outcome.status === 'queued') onWaiting.get(request.owner)?.();
  };
  const lockses = [await target.open({ observe }), await target.open({ observe })];
  const key = `handoff/${randomBytes(6).toString('hex')}`;
  const controller = new AbortController();
  setMaxListeners(0, controller.signal); // every client's sleeps listen to it
  const changed = new Notifier();
  const samples: number[] = [];
  const releases: number[] = [];
  const sameProcess: number[] = [];
  const otherProcess: number[] = [];
  /** Which of `lockses` the last releasing client used. */
  let releasedBy = -1;
  let deadline = Infinity;
  let giveUpAt = performance.now() + 120_000;
  let waiting = 0;
  let grants = 0;
  /** Hand-offs completed, the warm-up ones included. */
  let handoffs = 0;
  let releasedAt: number | null = null;
  let stop = false;

  const stall = (what: string): never => {
    throw new Error(`hand-off ${strategy.name} on ${target.kind} with ${waiters} waiters stalled: ${what}`);
  };

  const client = async (c: number): Promise<void> => {
    const owner = `client-${c}`;
    const locks = lockses[c % lockses.length]!;
    let isWaiting = false;
    const markWaiting = (): void => {
      if (isWaiting) return;
      isWaiting = true;
      waiting++;
      changed.notify();
    };
    onWaiting.set(owner, markWaiting);
    while (!stop) {
      let lease;
      try {
        lease = await strategy.wait(locks, key, { owner, signal: controller.signal, onWaiting: markWaiting });
      } catch (error) {
        if (controller.signal.aborted) break;
        throw error;
      }
      const grantedAt = performance.now();
      if (isWaiting) {
        isWaiting = false;
        waiting--;
      }
      if (releasedAt !== null && ++handoffs > budget.warmup) {
        samples.push(grantedAt - releasedAt);
        (releasedBy === c % lockses.length ? sameProcess : otherProcess).push(grantedAt - releasedAt);
      }
      releasedAt = null;
      grants++;
      changed.notify();
      if (samples.length >= budget.samples || grantedAt >= deadline) stop = true;
      while (!stop && waiting < clients - 1) {
        if (performance.now() > giveUpAt) stall(`${waiting} of ${clients - 1} waiters queued`);
        await changed.next(1000);
      }
      if (deadline === Infinity && handoffs >= budget.warmup) {
        deadline = performance.now() + budget.timeMs;
        giveUpAt = deadline + 60_000;
      }
      if (!stop && strategy.phaseMs > 0) await sleep(Math.random() * strategy.phaseMs);
      // Read before releasing: the next grant can come before `release()` returns.
      const seen = grants;
      const releasing = performance.now();
      const measured = handoffs >= budget.warmup;
      if (!stop) {
        releasedAt = releasing;
        releasedBy = c % lockses.length;
      }
      await lease.release();
      if (!stop && measured) releases.push(performance.now() - releasing);
      if (stop) {
        controller.abort();
        break;
      }
      while (!stop && grants === seen) {
        if (performance.now() > giveUpAt) stall('nobody was granted after a release');
        await changed.next(1000);
      }
    }
  };

  try {
    const runs = Array.from({ length: clients }, (_, c) =>
      client(c).catch((error: unknown) => {
        stop = true;
        controller.abort();
        changed.notify();
        throw error;
      }),
    );
    const outcomes = await Promise.allSettled(runs);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    stop = true;
    controller.abort();
    await Promise.allSettled(lockses.map((l) => l.close()));
  }
  return { latencies: samples, releases, sameProcess, otherProcess };
}

/** Where holdfast's hand-off time goes: the releasing call (which grants the next waiter in the store); the rest is waking the waiter and its poll. */
export function recordReleases(ctx: BenchContext, suite: string, caseName: string, releases: readonly number[]): void {
  recordPercentiles(ctx, suite, caseName, 'release()', releases);
}

/** `<label> p50` and `<label> p99` rows of holdfast in a case (none when there are no samples). */
export function recordPercentiles(ctx: BenchContext, suite: string, caseName: string, label: string, samples: readonly number[]): void {
  if (samples.length === 0) return;
  const s = summarize(samples);
  ctx.rec.add({ suite, case: caseName, subject: HOLDFAST, metric: `${label} p50`, value: s.p50, unit: 'ms', n: s.n });
  ctx.rec.add({ suite, case: caseName, subject: HOLDFAST, metric: `${label} p99`, value: s.p99, unit: 'ms', n: s.n });
}

export async function handoffSuite(ctx: BenchContext): Promise<void> {
  const suite = 'handoff';
  const budget = handoffBudget(ctx);
  const strategies = waitStrategies(ctx.profile === 'smoke' ? 0.02 : 1);
  const waiterCounts = pick(ctx, { full: [1, 100], quick: [1, 100], smoke: [1, 3] });
  for (const kind of storesOf(ctx, ['memory', 'sqlite', 'postgres'] as StoreKind[])) {
    const open = await ctx.rec.guard(suite, kind, ctx.log, () => openTarget(ctx, kind));
    if (!open) continue;
    try {
      for (const waiters of waiterCounts) {
        const caseName = `${kind}, ${waiters} waiter${waiters === 1 ? '' : 's'}`;
        for (const strategy of strategies) {
          await ctx.rec.guard(suite, `${caseName} / ${strategy.name}`, ctx.log, async () => {
            const { latencies, releases } = await measureHandoff(open, strategy, waiters, budget);
            ctx.rec.latency({ suite, case: caseName, subject: strategy.name }, latencies);
            if (strategy === queueWait) recordReleases(ctx, suite, caseName, releases);
            ctx.log(`  ${caseName} / ${strategy.name}: ${latencies.length} hand-offs, p99 ${summarize(latencies).p99.toFixed(2)} ms`);
          });
        }
      }
    } finally {
      await open.close();
    }
  }
}
