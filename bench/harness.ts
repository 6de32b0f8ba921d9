/**
 * The benchmark harness: timing with `performance.now()`, percentiles, warm-up, result rows, and
 * a table printer that puts holdfast next to its anchors with the ratio holdfast/anchor computed
 * from the same run.
 *
 * Profiles: `full` (the numbers to publish), `quick` (everything in under two minutes, fewer and
 * shorter repeats), `smoke` (one iteration of each thing, for the test that keeps the harness
 * from rotting; its numbers mean nothing).
 */
import { setTimeout as delay } from 'node:timers/promises';

/** The subject every ratio is computed for. */
export const HOLDFAST = 'holdfast';

export interface Row {
  suite: string;
  case: string;
  subject: string;
  metric: string;
  value: number;
  unit: string;
  /** Samples behind the value (latencies), or repeats (throughput). */
  n?: number;
  /** Throughput only: slowest and fastest repeat. */
  range?: [number, number];
  note?: string;
}

export type Profile = 'full' | 'quick' | 'smoke';
export type StoreKind = 'memory' | 'sqlite' | 'postgres' | 'mysql';

export interface BenchContext {
  readonly profile: Profile;
  readonly rec: Recorder;
  /** The stores the run may use (smoke: memory and sqlite). */
  readonly stores: ReadonlySet<StoreKind>;
  /** The suites of this run (a suite can leave a measurement to another one that runs too). */
  readonly suites: ReadonlySet<string>;
  readonly postgresUrl: string;
  log(message: string): void;
}

/** Picks the value of the current profile. */
export function pick<T>(ctx: BenchContext, values: { full: T; quick: T; smoke: T }): T {
  return values[ctx.profile];
}

/** Thrown by a suite (or a case) whose store cannot be reached: it is reported as skipped. */
export class SkipError extends Error {}

export class Recorder {
  readonly rows: Row[] = [];
  readonly meta: Record<string, unknown> = {};

  add(row: Row): void {
    this.rows.push(row);
  }

  /** p50 and p99 (and the sample count) of latency samples in milliseconds. */
  latency(base: Omit<Row, 'metric' | 'value' | 'unit'>, samples: readonly number[]): void {
    const s = summarize(samples);
    this.add({ ...base, metric: 'p50', value: s.p50, unit: 'ms', n: s.n });
    this.add({ ...base, metric: 'p99', value: s.p99, unit: 'ms', n: s.n });
  }

  /** The median of repeated throughput measurements. */
  throughput(base: Omit<Row, 'value' | 'unit' | 'n' | 'range'>, perSecond: readonly number[], unit = 'ops/s'): void {
    if (perSecond.length === 0) return;
    const sorted = [...perSecond].sort((a, b) => a - b);
    this.add({ ...base, value: median(sorted), unit, n: sorted.length, range: [sorted[0]!, sorted.at(-1)!] });
  }

  skip(suite: string, reason: string, caseName = '*'): void {
    this.add({ suite, case: caseName, subject: '-', metric: 'skipped', value: Number.NaN, unit: '', note: reason });
  }

  /** Suites in which something failed (not merely skipped). */
  readonly failed = new Set<string>();

  /** Records a failure of one case (or, with `*`, of a whole suite); the run goes on and exits non-zero. */
  fail(suite: string, error: unknown, caseName = '*'): void {
    this.failed.add(suite);
    this.skip(suite, `FAILED: ${error instanceof Error ? error.message : String(error)}`, caseName);
  }

  /**
   * Runs one measurement and returns its value; a SkipError skips it, any other error fails it,
   * and either way the suite goes on (the value is then undefined).
   */
  async guard<T>(suite: string, caseName: string, log: (message: string) => void, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof SkipError) this.skip(suite, error.message, caseName);
      else this.fail(suite, error, caseName);
      log(`  ${caseName}: ${error instanceof SkipError ? 'skipped' : 'FAILED'}: ${error instanceof Error ? (error instanceof SkipError ? error.message : (error.stack ?? error.message)) : String(error)}`);
      return undefined;
    }
  }
}

// ---------------------------------------------------------------------------------- statistics

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function median(sorted: readonly number[]): number {
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(samples: readonly number[]): { n: number; p50: number; p99: number; max: number } {
  const sorted = Float64Array.from(samples).sort();
  const arr = Array.from(sorted);
  return { n: arr.length, p50: percentile(arr, 50), p99: percentile(arr, 99), max: arr.at(-1) ?? Number.NaN };
}

// ---------------------------------------------------------------------------------- timing

/** Wakes everyone awaiting `next()` when `notify()` is called (or after `timeoutMs`). */
export class Notifier {
  #waiters: (() => void)[] = [];

  next(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  delay(ms, undefined, signal ? { signal } : undefined).catch(() => {});

export interface LoopOptions {
  /** Run (and discard) this long first. */
  warmupMs: number;
  durationMs: number;
  /** Parallel workers, each running `op` in sequence. */
  concurrency: number;
  /** Record each op's latency (costs a clock read per op). */
  latency: boolean;
  /** Smoke: stop after this many ops per worker. */
  maxOpsPerWorker?: number;
  /** Called between the warm-up and the measured run. */
  onMeasureStart?: () => void;
}

export interface LoopResult {
  ops: number;
  elapsedMs: number;
  perSecond: number;
  latencies: number[];
}

/**
 * Runs `op(worker, i)` on `concurrency` workers for `durationMs` after a warm-up and returns the
 * rate and, with `latency`, every op's duration. `i` counts per worker across warm-up and run.
 */
export async function runLoop(op: (worker: number, i: number) => Promise<unknown>, options: LoopOptions): Promise<LoopResult> {
  const counters = new Array<number>(options.concurrency).fill(0);
  const phase = async (ms: number, latencies: number[] | null): Promise<{ ops: number; elapsedMs: number }> => {
    const start = performance.now();
    const end = start + ms;
    const max = options.maxOpsPerWorker ?? Infinity;
    let ops = 0;
    const worker = async (w: number): Promise<void> => {
      for (let n = 0; n < max; n++) {
        if ((n & 7) === 0 && performance.now() >= end) break;
        const i = counters[w]!++;
        if (latencies) {
          const t0 = performance.now();
          await op(w, i);
          latencies.push(performance.now() - t0);
        } else {
          await op(w, i);
        }
        ops++;
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
    return { ops, elapsedMs: performance.now() - start };
  };
  if (options.warmupMs > 0) await phase(options.warmupMs, null);
  options.onMeasureStart?.();
  const latencies: number[] = [];
  const { ops, elapsedMs } = await phase(options.durationMs, options.latency ? latencies : null);
  return { ops, elapsedMs, perSecond: (ops / elapsedMs) * 1000, latencies };
}

export interface Subject {
  name: string;
  op: (worker: number, i: number) => Promise<unknown>;
  /** Round trips to report per op (`store calls/pair`, `SQL queries/pair`), from counters. */
  counters?: { metric: string; counter: { total: number } }[];
}

/**
 * Measures several subjects on one case, interleaved: repeat 1 of each, then repeat 2 of each...
 * (each repeat starting one subject later), so a machine that gets busier during the run affects
 * all subjects alike and none always follows the same other one. The first repeat of
 * each subject is preceded by its warm-up. Records throughput (median of repeats) and, with
 * `latency`, p50/p99 over the samples of all repeats.
 */
export async function compare(
  ctx: BenchContext,
  suite: string,
  caseName: string,
  subjects: readonly Subject[],
  options: { repeats: number; warmupMs: number; durationMs: number; concurrency: number; latency: boolean; unit?: string },
): Promise<void> {
  const rates = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  const latencies = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  const counted = new Map<string, { ops: number; calls: number[] }>(subjects.map((s) => [s.name, { ops: 0, calls: (s.counters ?? []).map(() => 0) }]));
  const smoke = ctx.profile === 'smoke';
  for (let r = 0; r < options.repeats; r++) {
    // The order turns with each repeat, so no subject always runs right after the same other one
    // (in one process a run leaves the heap, the JIT and the sockets in a state the next one pays for).
    for (let s = 0; s < subjects.length; s++) {
      const subject = subjects[(s + r) % subjects.length]!;
      const counters = subject.counters ?? [];
      let before: number[] = [];
      const result = await runLoop(subject.op, {
        warmupMs: r === 0 && !smoke ? options.warmupMs : 0,
        durationMs: options.durationMs,
        concurrency: options.concurrency,
        latency: options.latency,
        onMeasureStart: () => {
          before = counters.map((c) => c.counter.total);
        },
        ...(smoke ? { maxOpsPerWorker: 1 } : {}),
      });
      const tally = counted.get(subject.name)!;
      tally.ops += result.ops;
      counters.forEach((c, k) => (tally.calls[k]! += c.counter.total - before[k]!));
      rates.get(subject.name)!.push(result.perSecond);
      // A loop, not push(...): a fast subject yields more samples than a call's argument limit.
      const all = latencies.get(subject.name)!;
      for (const sample of result.latencies) all.push(sample);
    }
  }
  for (const subject of subjects) {
    ctx.rec.throughput({ suite, case: caseName, subject: subject.name, metric: 'pairs/s' }, rates.get(subject.name)!, options.unit);
    if (options.latency) ctx.rec.latency({ suite, case: caseName, subject: subject.name }, latencies.get(subject.name)!);
    const tally = counted.get(subject.name)!;
    (subject.counters ?? []).forEach((c, k) => {
      ctx.rec.add({ suite, case: caseName, subject: subject.name, metric: c.metric, value: tally.calls[k]! / tally.ops, unit: 'calls', n: tally.ops });
    });
    const s = summarize(rates.get(subject.name)!);
    ctx.log(`  ${caseName} / ${subject.name}: ${formatNumber(s.p50)} pairs/s`);
  }
}

// ---------------------------------------------------------------------------------- the table

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return '0';
  return value.toPrecision(2);
}

function formatCell(row: Row | undefined): string {
  return row ? formatNumber(row.value) : '';
}

function formatRatio(holdfast: Row | undefined, anchor: Row | undefined): string {
  if (!holdfast || !anchor || !Number.isFinite(holdfast.value) || !Number.isFinite(anchor.value) || anchor.value === 0) return '';
  const ratio = holdfast.value / anchor.value;
  return `${ratio >= 100 ? ratio.toFixed(0) : ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`;
}

function markdownTable(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

/**
 * One markdown table per suite: a row per case and metric, a column per subject, and after each
 * anchor the ratio holdfast/anchor (for rates, above 1 means holdfast is faster; for latencies,
 * below 1 means holdfast is faster).
 */
export function renderTables(rows: readonly Row[]): string {
  const out: string[] = [];
  const suites = [...new Set(rows.map((r) => r.suite))];
  for (const suite of suites) {
    const mine = rows.filter((r) => r.suite === suite);
    const skipped = mine.filter((r) => r.metric === 'skipped');
    const measured = mine.filter((r) => r.metric !== 'skipped');
    out.push(`### ${suite}${measured.length === 0 ? ' (skipped)' : ''}`, '');
    for (const s of skipped) out.push(`- skipped${s.case === '*' ? '' : ` (${s.case})`}: ${s.note ?? ''}`);
    if (skipped.length > 0) out.push('');
    if (measured.length === 0) continue;
    const subjects = [...new Set(measured.map((r) => r.subject))].sort((a, b) => (a === HOLDFAST ? -1 : b === HOLDFAST ? 1 : 0));
    const anchors = subjects.filter((s) => s !== HOLDFAST);
    const hasHoldfast = subjects.includes(HOLDFAST);
    const header = ['case', 'metric', 'unit', ...subjects.flatMap((s) => (s === HOLDFAST || !hasHoldfast ? [s] : [s, `holdfast/${s}`]))];
    const body: string[][] = [];
    const lines = [...new Map(measured.map((r) => [`${r.case}\u0000${r.metric}`, r])).values()];
    for (const { case: caseName, metric, unit } of lines) {
      const find = (subject: string): Row | undefined =>
        measured.find((r) => r.case === caseName && r.metric === metric && r.subject === subject);
      const holdfast = find(HOLDFAST);
      const cells = [caseName, metric, unit];
      for (const subject of subjects) {
        cells.push(formatCell(find(subject)));
        if (subject !== HOLDFAST && hasHoldfast && anchors.includes(subject)) cells.push(formatRatio(holdfast, find(subject)));
      }
      body.push(cells);
    }
    out.push(markdownTable(header, body), '');
    const notes = [...new Set(measured.filter((r) => r.note).map((r) => `${r.case} / ${r.subject}: ${r.note}`))];
    for (const note of notes) out.push(`- ${note}`);
    if (notes.length > 0) out.push('');
  }
  return out.join('\n');
}
