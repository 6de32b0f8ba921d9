/**
 * The issues' speed targets, checked against one run's rows and printed under the tables: each
 * line says the measured value, the target, and `met` or by how much it was missed. A target
 * whose rows the run did not produce (its suite or store was not run) is left out.
 *
 *   #14 MySQL     pairs/s ≥ 0.6× the naive row lease at 1 caller; hand-off p99 < 5 ms between
 *                 clients of one store object, < 10 ms between the two (through the watcher)
 *   #15 Redis     see `redisTargets` in suites/redis.ts (when that suite ran)
 *   #16 etcd      see `etcdTargets` in suites/etcd.ts
 *   #17 speed     Postgres ≥ 0.7× naive at 1 caller, ≥ 1.0× at 32; SQLite FULL ≥ 0.8× naive at 1
 *                 caller and ≥ 2× at 16 concurrent callers; SQLite NORMAL p99 ≤ 3× naive's; HTTP
 *                 on memory ≥ 0.7× the bare Fastify lock at 64 clients; memory ≥ 0.5× async-mutex
 *                 sequentially; hand-off p99 < 5 ms on every push store, with 1 and 100 waiters
 */
import type { Row } from './harness.js';
import { HOLDFAST } from './harness.js';

type Rows = readonly Row[];

function find(rows: Rows, suite: string, caseName: string, subject: string, metric: string): Row | undefined {
  return rows.find((r) => r.suite === suite && r.case === caseName && r.subject === subject && r.metric === metric);
}

function casesOf(rows: Rows, suite: string, test: (caseName: string) => boolean): string[] {
  return [...new Set(rows.filter((r) => r.suite === suite && test(r.case)).map((r) => r.case))];
}

/** `holdfast/anchor` of `metric` (higher is better) against `goal`. */
export function ratioAtLeast(rows: Rows, suite: string, caseName: string, anchor: string, goal: number, label = suite): string | null {
  const h = find(rows, suite, caseName, HOLDFAST, 'pairs/s');
  const a = find(rows, suite, caseName, anchor, 'pairs/s');
  if (!h || !a || a.value === 0) return null;
  const ratio = h.value / a.value;
  return `- ${label} pairs/s, ${caseName}: holdfast/${anchor} = ${ratio.toFixed(2)}× (target ≥ ${goal.toFixed(2)}×): ${
    ratio >= goal ? 'met' : `MISSED, ${((1 - ratio / goal) * 100).toFixed(0)}% short (${(goal / ratio).toFixed(1)}× to go)`}`;
}

/** A latency in ms (lower is better) of holdfast against an absolute bound. */
export function latencyBelow(rows: Rows, suite: string, caseName: string, metric: string, boundMs: number, label: string, inclusive = false): string | null {
  const row = find(rows, suite, caseName, HOLDFAST, metric);
  if (!row) return null;
  const ok = inclusive ? row.value <= boundMs : row.value < boundMs;
  return `- ${label} ${metric}: ${row.value.toFixed(2)} ms over ${row.n ?? 0} samples (target ${inclusive ? '≤' : '<'} ${boundMs} ms): ${
    ok ? 'met' : `MISSED by ${(row.value - boundMs).toFixed(2)} ms (${(row.value / boundMs).toFixed(1)}× the target)`}`;
}

/** holdfast's p99 against `factor`× the anchor's p99 in the same case. */
function p99Within(rows: Rows, suite: string, caseName: string, anchor: string, factor: number): string | null {
  const h = find(rows, suite, caseName, HOLDFAST, 'p99');
  const a = find(rows, suite, caseName, anchor, 'p99');
  if (!h || !a || a.value === 0) return null;
  const times = h.value / a.value;
  return `- ${suite} p99, ${caseName}: holdfast ${h.value.toFixed(2)} ms = ${times.toFixed(1)}× ${anchor}'s ${a.value.toFixed(2)} ms (target ≤ ${factor}×): ${
    times <= factor ? 'met' : `MISSED, ${(times / factor).toFixed(1)}× over`}`;
}

function speedTargets(rows: Rows): Array<string | null> {
  const out: Array<string | null> = [];
  for (const c of casesOf(rows, 'postgres', (name) => !name.startsWith('hand-off'))) {
    out.push(ratioAtLeast(rows, 'postgres', c, 'naive-upsert', c === '1 caller' ? 0.7 : 1.0));
  }
  out.push(ratioAtLeast(rows, 'sqlite', 'FULL, 1 key, sequential', 'naive-sqlite', 0.8));
  out.push(ratioAtLeast(rows, 'sqlite', 'FULL, 16 concurrent callers', 'naive-sqlite', 2.0));
  out.push(p99Within(rows, 'sqlite', 'NORMAL, 1 key, sequential', 'naive-sqlite', 3));
  out.push(ratioAtLeast(rows, 'http', 'memory, 64 concurrent clients', 'bare fastify+Map', 0.7));
  out.push(ratioAtLeast(rows, 'http', 'memory, 64 clients, server in its own process', 'bare fastify+Map', 0.7));
  out.push(ratioAtLeast(rows, 'memory', '1 key, sequential', 'async-mutex', 0.5));
  for (const c of casesOf(rows, 'handoff', () => true)) out.push(latencyBelow(rows, 'handoff', c, 'p99', 5, `hand-off ${c}`));
  return out;
}

function mysqlTargets(rows: Rows): Array<string | null> {
  const out: Array<string | null> = [ratioAtLeast(rows, 'mysql', '1 caller', 'naive-row-lease', 0.6)];
  for (const c of casesOf(rows, 'mysql', (name) => name.startsWith('hand-off'))) {
    out.push(latencyBelow(rows, 'mysql', c, 'same process p99', 5, `mysql ${c}`));
    out.push(latencyBelow(rows, 'mysql', c, 'other process p99', 10, `mysql ${c}`));
  }
  return out;
}

/** Every target line this run's rows allow, issue by issue. */
export function issueTargets(rows: Rows, more: ReadonlyArray<(rows: Rows) => string[]> = []): string[] {
  const lines = [...speedTargets(rows), ...mysqlTargets(rows)].filter((line): line is string => line !== null);
  for (const extra of more) lines.push(...extra(rows));
  return lines;
}
