/**
 * `contention`: 500 clients on one key for a fixed time, each holding the lock ~1 ms, releasing,
 * pausing ~1 ms and queueing again. Per store and waiting strategy:
 *
 *   grants/s               grants during the window / its length
 *   max grants before all  the most grants any one client had got at the moment every client
 *                          had got at least one (1 = strict FIFO; at the end of the window if
 *                          some client never got one)
 *   never granted          clients without a single grant during the window
 *   store calls/hand-off   store calls of all clients (counting proxy) / grants: the thundering
 *                          herd check (a queue with push wake-ups needs about 3: release, the
 *                          woken waiter's poll, the releaser's new acquire; plus heartbeats)
 *   SQL queries/hand-off   postgres: every query the store objects sent (with follow-ups, sweeps)
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { waitStrategies, type WaitStrategy } from '../anchors.js';
import { pick, sleep, type BenchContext, type StoreKind } from '../harness.js';
import { openTarget, postgresVersion, storesOf, type Target } from '../stores.js';

export interface ContentionResult {
  /** Time until every client had made its first attempt (holdfast: was queued), or the setup limit. */
  setupMs: number;
  /** Clients that had made their first attempt when the window started (all, unless the setup limit was hit). */
  queuedUp: number;
  grants: number;
  elapsedMs: number;
  maxBeforeAll: number;
  neverGranted: number;
  calls: number;
  sql: number | null;
  /** Store calls that failed with STORE_UNAVAILABLE during the window (waits retry; a failed release is not retried). */
  errors: number;
  firstError: string | null;
}

/**
 * Runs `clients` clients on one key of a fresh `target`. The measured window starts once every
 * client has made its first attempt (so 500 clients queueing up is not counted as throughput)
 * and lasts `durationMs`; fairness counts from the very first grant.
 */
export async function measureContention(
  target: Target,
  strategy: WaitStrategy,
  options: { clients: number; durationMs: number; setupLimitMs: number; holdMs: number; pauseMs: number; objects: number },
): Promise<ContentionResult> {
  const entered = new Set<string>();
  let setupDone: () => void = () => {};
  const setup = new Promise<void>((resolve) => (setupDone = resolve));
  const enter = (owner: string): void => {
    entered.add(owner);
    if (entered.size === options.clients) setupDone();
  };
  const observe = (outcome: { status: string }, request: { owner: string }): void => {
    if (outcome.status !== 'busy') enter(request.owner);
  };
  const lockses = await Promise.all(Array.from({ length: options.objects }, () => target.open({ observe })));
  const key = `contention/${randomBytes(6).toString('hex')}`;
  const controller = new AbortController();
  setMaxListeners(0, controller.signal); // every client's sleeps listen to it
  const perClient = new Array<number>(options.clients).fill(0);
  let served = 0;
  let grants = 0;
  let maxBeforeAll: number | null = null;
  let stop = false;
  let errors = 0;
  let firstError: string | null = null;
  const onError = (error: unknown): void => {
    errors++;
    firstError ??= error instanceof Error ? error.message : String(error);
  };

  const client = async (c: number): Promise<void> => {
    const owner = `client-${c}`;
    const locks = lockses[c % lockses.length]!;
    while (!stop) {
      let lease;
      try {
        lease = await strategy.wait(locks, key, { owner, signal: controller.signal, onWaiting: () => enter(owner), onError });
      } catch (error) {
        if (controller.signal.aborted) break;
        throw error;
      }
      enter(owner);
      if (!stop) {
        grants++;
        if (perClient[c]!++ === 0 && ++served === options.clients) maxBeforeAll = perClient.reduce((a, b) => Math.max(a, b), 0);
      }
      await sleep(options.holdMs);
      // A failed release leaves the lock held until its TTL (30 s): counted as a store error.
      await lease.release().catch((error: unknown) => {
        if (!controller.signal.aborted) onError(error);
        return false;
      });
      await sleep(options.pauseMs);
    }
  };

  const started = performance.now();
  const runs = Array.from({ length: options.clients }, (_, c) =>
    client(c).catch((error: unknown) => {
      stop = true;
      controller.abort();
      throw error;
    }),
  );
  const ended = Promise.all(runs);
  const guard = new AbortController();
  await Promise.race([setup, ended, sleep(options.setupLimitMs, guard.signal)]);
  guard.abort();
  const setupMs = performance.now() - started;
  const queuedUp = entered.size;
  const at = { grants, errors, calls: target.calls.total, sql: target.sql?.total ?? 0, time: performance.now() };
  await Promise.race([sleep(options.durationMs), ended]);
  stop = true;
  const counted = {
    grants: grants - at.grants,
    calls: target.calls.total - at.calls,
    sql: target.sql ? target.sql.total - at.sql : null,
    elapsedMs: performance.now() - at.time,
    errors: errors - at.errors,
  };
  // End it like a crash: every store call fails at once, so 500 waiters leave without 500 cancels.
  target.takeDown();
  controller.abort();
  try {
    const outcomes = await Promise.allSettled(runs);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    await Promise.allSettled(lockses.map((l) => l.close()));
  }
  return { ...counted, firstError, setupMs, queuedUp, maxBeforeAll: maxBeforeAll ?? perClient.reduce((a, b) => Math.max(a, b), 0), neverGranted: perClient.filter((n) => n === 0).length };
}

export async function contentionSuite(ctx: BenchContext): Promise<void> {
  const suite = 'contention';
  const options = pick(ctx, {
    full: { clients: 500, durationMs: 20_000, setupLimitMs: 60_000 },
    quick: { clients: 500, durationMs: 2000, setupLimitMs: 5000 },
    smoke: { clients: 5, durationMs: 50, setupLimitMs: 5000 },
  });
  const strategies = waitStrategies(ctx.profile === 'smoke' ? 0.02 : 1);
  for (const kind of storesOf(ctx, ['memory', 'sqlite', 'postgres'] as StoreKind[])) {
    const caseName = `${kind}, ${options.clients} clients`;
    if (kind === 'postgres' && (await ctx.rec.guard(suite, kind, ctx.log, () => postgresVersion(ctx.postgresUrl))) === undefined) continue;
    for (const strategy of strategies) {
      const r = await ctx.rec.guard(suite, `${caseName} / ${strategy.name}`, ctx.log, async () => {
        const target = await openTarget(ctx, kind); // a fresh store each time: no leftovers of the last run
        try {
          return await measureContention(target, strategy, { ...options, holdMs: 1, pauseMs: 1, objects: 2 });
        } finally {
          await target.close();
        }
      });
      if (!r) continue;
      const base = { suite, case: caseName, subject: strategy.name };
      const everyone = r.neverGranted === 0;
      ctx.rec.add({ ...base, metric: 'grants/s', value: (r.grants / r.elapsedMs) * 1000, unit: 'grants/s', n: r.grants });
      ctx.rec.add({
        ...base, metric: 'max grants before all', value: r.maxBeforeAll, unit: 'grants',
        ...(everyone ? {} : { note: `${r.neverGranted} of ${options.clients} clients never got the lock (${(r.setupMs / 1000).toFixed(1)} s queueing up + ${(r.elapsedMs / 1000).toFixed(1)} s)` }),
      });
      ctx.rec.add({ ...base, metric: 'never granted', value: r.neverGranted, unit: 'clients' });
      ctx.rec.add({ ...base, metric: 'store calls/hand-off', value: r.calls / Math.max(1, r.grants), unit: 'calls' });
      if (r.sql !== null) ctx.rec.add({ ...base, metric: 'SQL queries/hand-off', value: r.sql / Math.max(1, r.grants), unit: 'queries' });
      ctx.rec.add({
        ...base, metric: 'time to queue up', value: r.setupMs / 1000, unit: 's',
        ...(r.queuedUp < options.clients ? { note: `only ${r.queuedUp} of ${options.clients} clients had queued when the window started (setup limit)` } : {}),
      });
      ctx.rec.add({
        ...base, metric: 'store errors', value: r.errors, unit: 'errors',
        ...(r.firstError ? { note: `retried after STORE_UNAVAILABLE, e.g. "${r.firstError.slice(0, 160)}"` } : {}),
      });
      ctx.log(`  ${caseName} / ${strategy.name}: queued up in ${(r.setupMs / 1000).toFixed(1)} s, ${r.grants} grants in ${(r.elapsedMs / 1000).toFixed(1)} s, ${(r.calls / Math.max(1, r.grants)).toFixed(1)} calls/hand-off`);
    }
  }
}
