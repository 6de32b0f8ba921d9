/**
 * The recorded history of a fault run: what the workers did (invocations and completions, one
 * JSON line each), what the harness did to them (nemeses, process starts and exits), and what the
 * store and the register say at the end. The checker (checker.ts) is a pure function of a
 * `RunRecord`; main.ts writes one to the run directory as JSON lines so a failed run can be read.
 *
 * Times: `t` fields are the wall clock of the recording process (ms since the epoch, sub-ms);
 * store history `at` is the store's clock. Both run on this machine, so they are comparable to a
 * few ms, but the checker only compares them where it says so (orphaned grants, late self-fencing).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HistoryEvent, LockTable, Mode, Resource } from '../src/model/types.js';

/** Wall-clock ms with sub-ms precision, comparable across processes of this machine. */
export const clock = (): number => performance.timeOrigin + performance.now();

interface At {
  /** The worker's name, which is also its owner in the store (`f<run>-w3.2`: slot 3, 2nd process). */
  w: string;
  t: number;
}

/**
 * Operations are `invoke` then one of `ok` (done), `fail` (definitely not done) or `info`
 * (indeterminate: an error after the request may have taken effect). A worker killed in between
 * leaves the invocation without a completion, which counts as indeterminate too.
 */
export type WorkerEvent = At &
  (
    | { type: 'ready'; pid: number }
    | { type: 'invoke'; f: 'acquire'; op: string; resources: Resource[]; waitMs: number; ttlMs: number }
    | { type: 'ok'; f: 'acquire'; op: string; fence: number; expiresAt: number }
    | { type: 'fail'; f: 'acquire'; op: string; code: string; message: string }
    /** `live`: the lease was held and its local deadline not passed when the write was sent. */
    | { type: 'invoke'; f: 'write'; op: string; lease: string; fence: number; key: string; mode: Mode; live: boolean }
    /** `live`: still held and within its deadline when the answer arrived (measured after it). */
    | { type: 'ok'; f: 'write'; op: string; seq: number; live: boolean }
    | { type: 'fail'; f: 'write'; op: string; highest: number; live: boolean }
    | { type: 'info'; f: 'write' | 'release' | 'acquire'; op: string; message: string }
    | { type: 'invoke'; f: 'release'; op: string; lease: string; fence: number }
    | { type: 'ok'; f: 'release'; op: string; released: boolean }
    /** The worker did not release a lease that was no longer held (lost): it ends by expiry. */
    | { type: 'skip-release'; lease: string; fence: number; state: string }
    | { type: 'lost'; fence: number; reason: string }
    /** The worker's event loop was blocked this long (measured by a 50 ms interval timer), ending at `t`. */
    | { type: 'stall'; ms: number }
    | { type: 'exit' }
  );

export type NemesisName = 'kill' | 'pause' | 'restart-store' | 'pause-store' | 'drop-connections' | ClusterNemesisName;
/** Faults of a store cluster's members (the etcd stack): see nemesis.ts. */
export type ClusterNemesisName = 'kill-leader' | 'kill-member' | 'pause-member' | 'partition-member';
export const CLUSTER_NEMESES: readonly ClusterNemesisName[] = ['kill-leader', 'kill-member', 'pause-member', 'partition-member'];
export const NEMESES: readonly NemesisName[] = ['kill', 'pause', 'restart-store', 'pause-store', 'drop-connections', ...CLUSTER_NEMESES];

/** One fault the harness injected, from `t` to `end`. `targets` are worker names (empty for store faults). */
export interface NemesisEvent {
  t: number;
  end: number;
  nemesis: NemesisName;
  targets: string[];
  detail: string;
}

/** A worker process starting or ending, as the parent saw it. */
export interface ProcessEvent {
  t: number;
  type: 'spawn' | 'exit';
  w: string;
  pid: number;
  code?: number | null;
  signal?: string | null;
  /** For `exit`: the harness killed it on purpose (kill / restart-store nemesis, or the final stop). */
  expected?: boolean;
  /** For `exit`: the end of its stderr, when it wrote any. */
  stderr?: string;
}

/** One write sent to the register. */
export interface RegisterWrite {
  key: string;
  fence: number;
  mode: Mode;
  writer: string;
  /** The acquire op of the lease that wrote. */
  lease: string;
  /** The write op. */
  op: string;
}

/** One accepted write, as the register table keeps it (`seq` is the register's commit order per key). */
export interface RegisterRow extends RegisterWrite {
  seq: number;
}

/** The register's current value of a key: the last write it accepted. */
export interface RegisterValue {
  key: string;
  fence: number;
  op: string;
  writes: number;
}

export interface RunConfig {
  runId: string;
  store: string;
  /** Every key of the run starts with this (the store may hold other runs' keys). */
  keyPrefix: string;
  ttlMs: number;
  /** A waiter that stops polling (killed, or cut off from the server) keeps its queue place this long in the
   *  store, and may be granted meanwhile (the client's waiterTtlMs; for http the server's). */
  waiterTtlMs: number;
  /** A completed acquire may take this much longer than its waitMs (scheduling, the last poll). */
  waitToleranceMs: number;
  /** How much more an acquire may take when it spans a store outage (the store's connect timeout). */
  outageAllowanceMs: number;
  /** How far the worker clock and the store clock may disagree when the checker compares them. */
  clockToleranceMs: number;
}

export interface RunRecord {
  config: RunConfig;
  events: WorkerEvent[];
  nemeses: NemesisEvent[];
  processes: ProcessEvent[];
  /** The store's history of this run's keys, any order. */
  history: HistoryEvent[];
  register: RegisterRow[];
  registerValues: RegisterValue[];
  /** `list()` of this run's keys after every worker stopped and TTL + margin passed. */
  finalList: LockTable;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same choices. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max]. */
export const between = (random: () => number, min: number, max: number): number => min + Math.floor(random() * (max - min + 1));

export const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** The keys of a run: leaves under two roots (so requests span roots), `prefix` + `a`/`b`. */
export function runKeys(prefix: string, count: number): { leaves: string[]; roots: string[] } {
  const roots = count > 1 ? [`${prefix}a`, `${prefix}b`] : [`${prefix}a`];
  const leaves = Array.from({ length: count }, (_, i) => `${roots[i % roots.length]}/k${i}`);
  return { leaves, roots };
}

/** The shared-holder limit used for `key` (the first leaf is a semaphore of 2; the rest unlimited). */
export const sharedLimitOf = (leaves: readonly string[], key: string): number | null => (key === leaves[0] ? 2 : null);

/** Writes a run to `dir`: `events.jsonl` (the workers' lines) and `record.json` (everything else). */
export function saveRecord(dir: string, record: RunRecord): void {
  writeFileSync(join(dir, 'events.jsonl'), record.events.map((e) => JSON.stringify(e)).join('\n'));
  writeFileSync(join(dir, 'record.json'), JSON.stringify({ ...record, events: undefined }, null, 1));
}

/** Reads a run written by `saveRecord`, to check it again (`npm run faults -- --check DIR`). */
export function loadRecord(dir: string): RunRecord {
  const record = JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8')) as RunRecord;
  const lines = readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n').filter((l) => l.length > 0);
  // Records of older harness versions lack the newer settings: their defaults.
  const config: RunConfig = { ...record.config };
  config.waiterTtlMs ??= 2000;
  config.outageAllowanceMs ??= 5000;
  return { ...record, config, events: lines.map((l) => JSON.parse(l) as WorkerEvent) };
}
