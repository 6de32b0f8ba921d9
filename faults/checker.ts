/**
 * The checker: pure functions over a `RunRecord`. Each check names the guarantee it tests.
 *
 *  (a) overlap   In the store's own history (acquired -> released/expired/forced, store clock,
 *                half-open intervals) no two leases whose resources conflict by SPEC 2 overlap,
 *                no shared key has more holders than its limit, and no fence is issued twice;
 *                every grant a worker received is in that history (nothing forgotten).
 *  (b) fences    Per register key, in commit order, accepted fences strictly increase; an equal
 *                fence is allowed only for the same lease writing again in `shared` mode. Every
 *                accepted fence was granted by the store to that writer, on a lock covering the key.
 *                And: a write refused while its lease was still live (measured by the worker after
 *                the answer) must have been superseded by a fence whose lease does not conflict with
 *                it (two shared holders); otherwise two conflicting leases were live at once.
 *  (c) lost      Every write a worker saw accepted is in the register's log with its seq; no log row
 *                without a worker invocation; the register's value is its last accepted write.
 *  (d) ended     Every lease in the history ended (released, expired or forced), and after the
 *                run plus TTL and margin `list()` shows no lock and no waiter.
 *  (e) waits     An acquire completes within its waitMs plus a tolerance, not counting the time
 *                its own worker was frozen (SIGSTOPped, or its event loop stalled: the worker
 *                records every gap of 150 ms or more in its 50 ms interval timer). A wait that
 *                spans a store outage (restart-store, drop-connections, a cluster member's fault; not on sqlite, where those
 *                kill workers) may overrun by `outageAllowanceMs` more: a store call may take up to
 *                the store's connect timeout then. Such waits are counted and printed.
 *  (f) lost      Lost leases are explained: every `lost` a worker saw belongs to a lease the store
 *                ended by expiry or force (or release-owner), never by a normal release, and fired no
 *                later than the store's expiry (unless the worker was paused or stalled); every
 *                lease the store expired or forced is explained by one of: its holder saw it lost
 *                (self-fenced), its holder was killed holding it, its holder was paused past its TTL,
 *                its holder's release failed (error, indeterminate, or sent before the expiry and
 *                answered after it: a slow store call), or it was granted to a request
 *                whose answer never arrived or was indeterminate (orphaned: a request of the owner with the
 *                same resources, killed or answered `info`, whose queue place could still live: up
 *                to waiterTtlMs after that answer or its worker's death), or granted and expired
 *                while its worker was frozen the whole time, or answered with a definite no only
 *                after the store had already expired it (a slow store call: nothing was left of
 *                it to give back). A grant to a request that was answered with a definite no
 *                (busy, timed out, aborted) is otherwise a violation. Lateness of
 *                `lost` likewise does not count the time the worker was frozen. Anything else is a lease its holder kept using after the store ended it.
 */
import type { HistoryEvent, HistoryType, Resource } from '../src/model/types.js';
import { CLUSTER_NEMESES, NEMESES, type ClusterNemesisName, type NemesisName, type RunRecord, type WorkerEvent } from './history.js';

export type CheckId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';

export interface Violation {
  check: CheckId;
  message: string;
  /** The recorded events that show it (store history events, register rows, worker events). */
  excerpt: unknown[];
}

export interface Counts {
  operations: number;
  grants: number;
  writesAccepted: number;
  writesRefused: number;
  writesUnknown: number;
  /** Refused writes whose lease was no longer live: the register caught a stale writer. */
  staleRefused: number;
  /** Writes sent after the lease was lost that the register still accepted (no newer fence had written). */
  staleAccepted: number;
  /** Refused writes of a live shared lease, superseded by another shared holder's higher fence. */
  sharedSuperseded: number;
  lost: number;
  /** Leases the store ended by expiry or force, and how each is explained. */
  expired: number;
  explained: { selfFenced: number; killed: number; paused: number; releaseFailed: number; orphaned: number };
  faults: Record<NemesisName, number>;
  /** The largest time an acquire took beyond its waitMs, less the time its worker was frozen. */
  maxWaitOverrunMs: number;
  /** Acquires beyond waitMs + tolerance only because their own worker was frozen (paused, or its loop stalled). */
  frozenWaits: number;
  maxFrozenWaitOverrunMs: number;
  /** Acquires beyond waitMs + tolerance that spanned a store restart or connection drop (within the allowance). */
  outageWaits: number;
  maxOutageWaitOverrunMs: number;
}

export interface CheckResult {
  counts: Counts;
  violations: Violation[];
}

export interface Interval {
  fence: number;
  owner: string;
  resources: Resource[];
  start: number;
  /** Infinity when the history has no end event. */
  end: number;
  endType: HistoryType | null;
  reason: string | null;
  events: HistoryEvent[];
}

export const keysOverlap = (a: string, b: string): boolean => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);

/** SPEC 2, pairwise: keys equal or nested, unless both shared (the shared limit is counted apart). */
export function resourcesConflict(a: readonly Resource[], b: readonly Resource[]): boolean {
  return a.some((x) => b.some((y) => keysOverlap(x.key, y.key) && !(x.mode === 'shared' && y.mode === 'shared')));
}

/** The resource of `resources` that covers register key `key` (the key itself or an ancestor). */
const covering = (resources: readonly Resource[], key: string): Resource | undefined =>
  resources.find((r) => r.key === key || key.startsWith(`${r.key}/`));

const iso = (ms: number): string => (Number.isFinite(ms) ? new Date(ms).toISOString() : 'never');

/** One interval per fence from the store history; duplicate grants or ends are violations. */
export function intervalsOf(history: readonly HistoryEvent[]): { byFence: Map<number, Interval>; violations: Violation[] } {
  const byFence = new Map<number, Interval>();
  const violations: Violation[] = [];
  for (const event of [...history].sort((x, y) => x.id - y.id)) {
    const at = Date.parse(event.at);
    const known = byFence.get(event.fence);
    if (event.type === 'acquired') {
      if (known) violations.push({ check: 'a', message: `fence ${event.fence} was issued twice (to ${known.owner} and ${event.owner})`, excerpt: [...known.events, event] });
      else byFence.set(event.fence, { fence: event.fence, owner: event.owner, resources: event.resources, start: at, end: Infinity, endType: null, reason: null, events: [event] });
    } else if (!known) {
      violations.push({ check: 'a', message: `fence ${event.fence} ended (${event.type}) but was never acquired in the history`, excerpt: [event] });
    } else if (known.endType !== null) {
      violations.push({ check: 'a', message: `fence ${event.fence} ended twice (${known.endType}, then ${event.type})`, excerpt: [...known.events, event] });
    } else {
      Object.assign(known, { end: at, endType: event.type, reason: event.reason });
      known.events.push(event);
      if (at < known.start) violations.push({ check: 'a', message: `fence ${event.fence} ended before it was acquired`, excerpt: known.events });
    }
  }
  return { byFence, violations };
}

/** (a): conflicting leases whose intervals overlap, and shared keys above their limit. */
export function checkOverlaps(intervals: Iterable<Interval>): Violation[] {
  const violations: Violation[] = [];
  const sorted = [...intervals].sort((x, y) => x.start - y.start || x.fence - y.fence);
  let active: Interval[] = [];
  for (const next of sorted) {
    active = active.filter((a) => a.end > next.start);
    for (const held of active) {
      if (!resourcesConflict(held.resources, next.resources)) continue;
      violations.push({
        check: 'a',
        message: `fences ${held.fence} (${held.owner}) and ${next.fence} (${next.owner}) held conflicting locks at once, ` +
          `${iso(next.start)} to ${iso(Math.min(held.end, next.end))}`,
        excerpt: [...held.events, ...next.events],
      });
    }
    for (const r of next.resources) {
      if (r.mode !== 'shared' || r.limit === null) continue;
      const holders = [...active, next].filter((a) => a.resources.some((x) => x.key === r.key && x.mode === 'shared'));
      if (holders.length > r.limit) {
        violations.push({
          check: 'a',
          message: `${holders.length} shared holders of "${r.key}" (limit ${r.limit}) at ${iso(next.start)}: fences ${holders.map((h) => h.fence).join(', ')}`,
          excerpt: holders.flatMap((h) => h.events),
        });
      }
    }
    active.push(next);
  }
  return violations;
}

type Op = { invoke: WorkerEvent & { type: 'invoke' }; done: (WorkerEvent & { type: 'ok' | 'fail' | 'info' }) | null };

/** Invocations with their completions, by op id. */
export function operationsOf(events: readonly WorkerEvent[]): Map<string, Op> {
  const ops = new Map<string, Op>();
  for (const e of events) {
    if (e.type === 'invoke') ops.set(e.op, { invoke: e, done: null });
    else if (e.type === 'ok' || e.type === 'fail' || e.type === 'info') {
      const op = ops.get(e.op);
      if (op) op.done = e;
    }
  }
  return ops;
}

export function check(record: RunRecord): CheckResult {
  const { config } = record;
  const tolerance = config.clockToleranceMs;
  const { byFence, violations } = intervalsOf(record.history);
  violations.push(...checkOverlaps(byFence.values()));
  const ops = operationsOf(record.events);
  const faults = Object.fromEntries(NEMESES.map((n) => [n, 0])) as Record<NemesisName, number>;
  for (const n of record.nemeses) faults[n.nemesis]++;

  // When each worker could not run: paused by the harness, or its event loop stalled (measured
  // by the worker: a blocking SQLite busy wait behind a paused writer, a slow machine).
  const frozen = new Map<string, Array<[number, number]>>();
  const freeze = (w: string, span: [number, number]): void => void (frozen.get(w) ?? frozen.set(w, []).get(w)!).push(span);
  for (const n of record.nemeses) if (n.nemesis === 'pause') for (const w of n.targets) freeze(w, [n.t, n.end]);
  for (const e of record.events) if (e.type === 'stall') freeze(e.w, [e.t - e.ms, e.t]);
  const overlaps = (w: string, from: number, to: number): boolean => (frozen.get(w) ?? []).some(([s, e]) => s <= to && e >= from);
  /** How long `w` was frozen within [from, to] (the union of its spans). */
  const frozenMs = (w: string, from: number, to: number): number => {
    let total = 0;
    let reached = from;
    for (const [s, e] of [...(frozen.get(w) ?? [])].sort((x, y) => x[0] - y[0])) {
      const start = Math.max(s, reached);
      const end = Math.min(e, to);
      if (end > start) total += end - start;
      reached = Math.max(reached, end);
    }
    return total;
  };
  const death = new Map<string, { t: number; killed: boolean }>();
  for (const p of record.processes) if (p.type === 'exit') death.set(p.w, { t: p.t, killed: p.signal === 'SIGKILL' });
  for (const p of record.processes) {
    if (p.type === 'exit' && !p.expected) {
      violations.push({ check: 'f', message: `worker ${p.w} exited on its own (code ${p.code}, signal ${p.signal})`, excerpt: [p] });
    }
  }

  const counts: Counts = {
    operations: ops.size, grants: 0, writesAccepted: 0, writesRefused: 0, writesUnknown: 0, staleRefused: 0, staleAccepted: 0,
    sharedSuperseded: 0, lost: 0, expired: 0, explained: { selfFenced: 0, killed: 0, paused: 0, releaseFailed: 0, orphaned: 0 },
    faults, maxWaitOverrunMs: 0, frozenWaits: 0, maxFrozenWaitOverrunMs: 0, outageWaits: 0, maxOutageWaitOverrunMs: 0,
  };

  // The worker's view of each lease: its acquire op by fence, its release, its loss.
  const acquireOf = new Map<number, Op>();
  const releaseOf = new Map<string, Op>();
  const lost = new Map<number, WorkerEvent & { type: 'lost' }>();
  for (const op of ops.values()) {
    const { invoke, done } = op;
    if (invoke.f === 'acquire' && done?.type === 'ok' && done.f === 'acquire') {
      counts.grants++;
      const other = acquireOf.get(done.fence);
      if (other) violations.push({ check: 'a', message: `fence ${done.fence} was granted to two requests (${other.invoke.op}, ${invoke.op})`, excerpt: [other.invoke, other.done, invoke, done] });
      acquireOf.set(done.fence, op);
    }
    if (invoke.f === 'release') releaseOf.set(invoke.lease, op);
  }
  // Every grant a worker received is in the store's history, as asked: else the store forgot a
  // lease (durability) and (a) could not see it.
  for (const [fence, { invoke, done }] of acquireOf) {
    const lease = byFence.get(fence);
    if (invoke.f !== 'acquire') continue;
    const text = (rs: readonly Resource[]): string => rs.map((r) => `${r.key} ${r.mode} ${r.limit ?? '-'}`).join(', ');
    const asked = text(invoke.resources);
    if (!lease || lease.owner !== invoke.w || text(lease.resources) !== asked) {
      violations.push({ check: 'a', message: `${invoke.w} was granted fence ${fence} for ${asked}, which the store's history does not record`, excerpt: [invoke, done, ...(lease?.events ?? [])] });
    }
  }
  for (const e of record.events) if (e.type === 'lost') lost.set(e.fence, e);
  counts.lost = lost.size;

  // (b) and (c): the register.
  const rowsByKey = new Map<string, RunRecord['register']>();
  const rowByOp = new Map(record.register.map((r) => [r.op, r]));
  for (const row of [...record.register].sort((x, y) => x.seq - y.seq)) (rowsByKey.get(row.key) ?? rowsByKey.set(row.key, []).get(row.key)!).push(row);
  for (const [key, rows] of rowsByKey) {
    rows.forEach((row, i) => {
      const lease = byFence.get(row.fence);
      if (!lease || lease.owner !== row.writer || !covering(lease.resources, key)) {
        violations.push({ check: 'b', message: `register accepted fence ${row.fence} for "${key}" from ${row.writer}, but the store granted no such lease on it`, excerpt: [row, ...(lease?.events ?? [])] });
      }
      const prev = rows[i - 1];
      if (!prev) return;
      if (row.fence < prev.fence) {
        violations.push({ check: 'b', message: `fence regression on "${key}": seq ${prev.seq} fence ${prev.fence}, then seq ${row.seq} fence ${row.fence}`, excerpt: [prev, row] });
      } else if (row.fence === prev.fence && !(row.lease === prev.lease && row.mode === 'shared')) {
        violations.push({ check: 'b', message: `fence ${row.fence} accepted twice on "${key}" (seq ${prev.seq}, ${row.seq}) other than by one shared lease writing again`, excerpt: [prev, row] });
      }
    });
    const last = rows[rows.length - 1]!;
    const value = record.registerValues.find((v) => v.key === key);
    if (!value || value.fence !== last.fence || value.op !== last.op) {
      violations.push({ check: 'c', message: `register value of "${key}" is not its last accepted write (seq ${last.seq})`, excerpt: [last, value ?? null] });
    }
  }
  for (const op of ops.values()) {
    const { invoke, done } = op;
    if (invoke.f !== 'write') continue;
    if (done?.type === 'ok' && done.f === 'write') {
      counts.writesAccepted++;
      if (!invoke.live) counts.staleAccepted++;
      const row = rowByOp.get(invoke.op);
      if (!row || row.seq !== done.seq || row.key !== invoke.key || row.fence !== invoke.fence) {
        violations.push({ check: 'c', message: `write ${invoke.op} (fence ${invoke.fence} on "${invoke.key}") was accepted as seq ${done.seq} but is not in the register`, excerpt: [invoke, done, row ?? null] });
      }
    } else if (done?.type === 'fail' && done.f === 'write') {
      counts.writesRefused++;
      if (!done.live) {
        counts.staleRefused++;
        continue;
      }
      // Refused while provably live: the newer fence's lease was granted while this one was live.
      const mine = byFence.get(invoke.fence);
      const newer = byFence.get(done.highest);
      const mineR = mine && covering(mine.resources, invoke.key);
      const newerR = newer && covering(newer.resources, invoke.key);
      if (mineR && newerR && !resourcesConflict([mineR], [newerR])) counts.sharedSuperseded++;
      else {
        violations.push({
          check: 'b',
          message: `write ${invoke.op} of live lease ${invoke.fence} on "${invoke.key}" was refused: fence ${done.highest} had written while it was live`,
          excerpt: [invoke, done, ...(mine?.events ?? []), ...(newer?.events ?? [])],
        });
      }
    } else counts.writesUnknown++;
  }
  for (const row of record.register) {
    if (!ops.has(row.op)) violations.push({ check: 'c', message: `register row seq ${row.seq} (${row.op}) was written by no recorded invocation`, excerpt: [row] });
  }

  // (d): everything ended.
  for (const lease of byFence.values()) {
    if (lease.endType === null) violations.push({ check: 'd', message: `lease ${lease.fence} (${lease.owner}) never ended`, excerpt: lease.events });
  }
  for (const lock of record.finalList.locks) violations.push({ check: 'd', message: `"${lock.key}" still held by ${lock.owner} (fence ${lock.fence}) after the run`, excerpt: [lock] });
  for (const waiter of record.finalList.waiters) violations.push({ check: 'd', message: `"${waiter.key}" still has waiter ${waiter.owner} after the run`, excerpt: [waiter] });

  // (e): waits. The time the waiter itself was frozen does not count against it; across a store
  // outage (a restart, dropped connections) a store call may take up to the store's connect
  // timeout, so such a wait may overrun by that much.
  const outages = record.nemeses.filter((n) => config.store !== 'sqlite' && (n.nemesis === 'restart-store' || n.nemesis === 'pause-store' || n.nemesis === 'drop-connections' || CLUSTER_NEMESES.includes(n.nemesis as ClusterNemesisName)));
  for (const { invoke, done } of ops.values()) {
    if (invoke.f !== 'acquire' || done === null) continue;
    const overrun = done.t - invoke.t - invoke.waitMs;
    const unexplained = overrun - frozenMs(invoke.w, invoke.t, done.t);
    if (overrun > config.waitToleranceMs && unexplained <= config.waitToleranceMs) {
      counts.frozenWaits++;
      counts.maxFrozenWaitOverrunMs = Math.max(counts.maxFrozenWaitOverrunMs, overrun);
    }
    const outage = outages.some((n) => n.t <= done.t && n.end + tolerance >= invoke.t);
    if (unexplained > config.waitToleranceMs && outage && unexplained <= config.outageAllowanceMs + config.waitToleranceMs) {
      counts.outageWaits++;
      counts.maxOutageWaitOverrunMs = Math.max(counts.maxOutageWaitOverrunMs, unexplained);
      continue;
    }
    counts.maxWaitOverrunMs = Math.max(counts.maxWaitOverrunMs, unexplained);
    if (unexplained > config.waitToleranceMs) {
      violations.push({ check: 'e', message: `${invoke.op} waited ${Math.round(done.t - invoke.t)} ms with waitMs ${invoke.waitMs}`, excerpt: [invoke, done] });
    }
  }

  // (f): lost leases, both ways.
  for (const [fence, event] of lost) {
    const lease = byFence.get(fence);
    if (!lease) {
      violations.push({ check: 'f', message: `${event.w} saw lease ${fence} lost, but the store never granted it`, excerpt: [event] });
    } else if (lease.endType === 'released' && lease.reason !== 'release-owner') {
      violations.push({ check: 'f', message: `${event.w} saw lease ${fence} lost (${event.reason}), yet the store records a normal release its holder never sent`, excerpt: [...lease.events, event] });
    } else if (lease.endType === 'expired' && event.t - lease.end - frozenMs(event.w, lease.end - tolerance, event.t) > tolerance) {
      violations.push({ check: 'f', message: `${event.w} saw lease ${fence} lost ${Math.round(event.t - lease.end)} ms after the store expired it (SPEC 3.11: before)`, excerpt: [...lease.events, event] });
    }
  }
  /**
   * A lease its owner never saw is explained when it was granted to one of the owner's requests
   * with these resources whose answer never came (killed) or was indeterminate (`info`), while
   * its queue place could still live: until waiterTtlMs after that answer or the worker's death.
   * Granted to a request answered with a definite "no" (busy, timed out, aborted), it is not.
   */
  const orphan = (lease: Interval): { message: string; ops: unknown[] } | null => {
    const same = (r: readonly Resource[]): boolean =>
      r.length === lease.resources.length && r.every((x, i) => x.key === lease.resources[i]!.key && x.mode === lease.resources[i]!.mode);
    const candidates = [...ops.values()].filter(({ invoke }) => invoke.f === 'acquire' && invoke.w === lease.owner && same(invoke.resources) && invoke.t - tolerance <= lease.start);
    const open = candidates.some(({ invoke, done }) =>
      (done === null || done.type === 'info') && lease.start <= (done?.t ?? death.get(invoke.w)?.t ?? Infinity) + config.waiterTtlMs + tolerance);
    if (open) return null;
    // Granted and expired while its waiter could not run: it could not have seen the grant.
    if (frozenMs(lease.owner, lease.start, lease.end) >= lease.end - lease.start - 2 * tolerance) return null;
    const answered = candidates.filter(({ done }) => done !== null && lease.start <= done.t + tolerance);
    const last = answered[answered.length - 1];
    // Answered only once the lease had already expired: the grant came back too late to give back.
    if (last && last.done!.t >= lease.end - tolerance) return null;
    if (last) return { message: `granted to ${last.invoke.op}, which was answered ${last.done!.type === 'fail' && last.done!.f === 'acquire' ? last.done!.code : last.done!.type} (nothing should be left of it)`, ops: [last.invoke, last.done] };
    return { message: 'granted while no request of its owner for these resources could be waiting', ops: [] };
  };
  for (const lease of byFence.values()) {
    if (lease.endType !== 'expired' && lease.endType !== 'forced') continue;
    counts.expired++;
    if (lost.has(lease.fence)) {
      counts.explained.selfFenced++;
      continue;
    }
    const acquire = acquireOf.get(lease.fence);
    if (!acquire) {
      const why = orphan(lease);
      if (why === null) counts.explained.orphaned++;
      else violations.push({ check: 'f', message: `lease ${lease.fence} of ${lease.owner} expired unseen: ${why.message}`, excerpt: [...lease.events, ...why.ops] });
      continue;
    }
    const w = acquire.invoke.w;
    const release = releaseOf.get(acquire.invoke.op);
    const done = release?.done;
    if (!release) {
      if (death.get(w)?.killed) counts.explained.killed++;
      else violations.push({ check: 'f', message: `lease ${lease.fence} expired while ${w} held it, never released it and never saw it lost`, excerpt: [...lease.events, acquire.invoke, acquire.done] });
    } else if (done?.type === 'ok' && done.f === 'release' && !done.released) {
      if (overlaps(w, lease.start, release.invoke.t)) counts.explained.paused++;
      // Sent before the store expired the lease, answered after: a slow store call (a member
      // fault, an election), not a holder that used a lease it had lost.
      else if (release.invoke.t < lease.end - tolerance && done.t > lease.end) counts.explained.releaseFailed++;
      else violations.push({ check: 'f', message: `${w} used lease ${lease.fence} until its release, after the store had expired it, without seeing it lost`, excerpt: [...lease.events, acquire.invoke, release.invoke, done] });
    } else if (done?.type === 'ok') {
      violations.push({ check: 'f', message: `${w}'s release of lease ${lease.fence} returned true, but the store records it ${lease.endType}`, excerpt: [...lease.events, release.invoke, done] });
    } else counts.explained.releaseFailed++;
  }
  return { counts, violations };
}
