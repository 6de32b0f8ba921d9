#!/usr/bin/env node
/**
 * holdfast fault harness: `npm run faults -- --store URL --duration 60s [--workers 8] [--keys 4]
 * [--nemesis kill,pause,restart-store,drop-connections] [--seed N]`.
 *
 * Starts worker processes (worker.ts) that lock, write to a fenced register (register.ts) and
 * release, injects faults (nemesis.ts) into them and into the store (stack.ts), then stops
 * everything, waits TTL + margin, reads the store's history and list and the register, checks the
 * run (checker.ts), prints one summary line and every violation, and exits 1 on any violation.
 * The recorded run is kept in a directory (printed) when it fails or with --keep.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openLocks } from '../src/engine/open.js';
import type { Locks } from '../src/engine/locks.js';
import { parseDuration } from '../src/model/duration.js';
import type { HistoryEvent } from '../src/model/types.js';
import { SERVER_DEFAULTS } from '../src/server/options.js';
import { POSTGRES_DEFAULTS } from '../src/stores/postgres/options.js';
import { check, type CheckResult } from './checker.js';
import { loadRecord, NEMESES, rng, runKeys, saveRecord, type NemesisEvent, type NemesisName, type ProcessEvent, type RunRecord, type WorkerEvent } from './history.js';
import { applicable, Nemesis } from './nemesis.js';
import { WorkerPool } from './pool.js';
import { DEFAULT_REGISTER_URL, Register } from './register.js';
import { openStack, type Stack } from './stack.js';

/** etcd: an operation may take up to the workers' operationTimeoutMs (etcd-stack.ts) across a member fault. */
const ETCD_FAULT_OUTAGE_MS = 5000;

const USAGE = `Usage: npm run faults -- --store URL [--duration 60s] [--workers 8] [--keys 4]
         [--nemesis kill,pause,restart-store,pause-store,drop-connections,kill-leader,kill-member,pause-member,partition-member]
         [--seed N] [--ttl 2s]
         [--interval 1.5s] [--register postgres://...] [--server-store URL] [--keep]

  --store URL        sqlite:PATH | postgres://...[?schema=S] | mysql://.../DB | redis://HOST:PORT/N | http://HOST[:PORT] (a server the harness runs)
                     | etcd (a 3-member cluster the harness runs) | etcd://HOST:PORT,...
  --nemesis LIST     comma-separated, or "none"; default all that apply to the store
  --register URL     the Postgres database of the fenced register (default ${DEFAULT_REGISTER_URL},
                     or env HOLDFAST_FAULTS_REGISTER_URL)
  --server-store URL the store of the holdfast server for http:// (default a temporary SQLite file)
  --wait-tolerance D how much longer than its waitMs an acquire may take (default 1s)
  --keep             keep the run directory (it is always kept when the run fails)
  --check DIR        check a kept run directory again (no run)
  --canary split-brain  (sqlite) half the workers lock in another file: the checker must fail the run`;

function fail(message: string): never {
  process.stderr.write(`faults: ${message}\n\n${USAGE}\n`);
  process.exit(64);
}

const { values } = parseArgs({
  options: {
    store: { type: 'string' }, duration: { type: 'string', default: '60s' }, workers: { type: 'string', default: '8' },
    keys: { type: 'string', default: '4' }, nemesis: { type: 'string' }, seed: { type: 'string' }, ttl: { type: 'string', default: '2s' },
    interval: { type: 'string', default: '1.5s' }, register: { type: 'string' }, 'server-store': { type: 'string' },
    'wait-tolerance': { type: 'string', default: '1s' }, check: { type: 'string' }, canary: { type: 'string' }, keep: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (values.check !== undefined) process.exit(report(loadRecord(values.check), ' (re-checked)', null));
if (values.store === undefined) fail('--store is required');
const int = (text: string, name: string, min: number, max: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name}: expected an integer ${min}..${max}, got ${JSON.stringify(text)}`);
  return n;
};
const ms = (text: string, name: string): number => {
  try {
    return parseDuration(text, name);
  } catch (error) {
    return fail(`--${name}: ${error instanceof Error ? error.message : String(error)}`);
  }
};
const storeUrl = values.store;
const durationMs = ms(values.duration, 'duration');
const workerCount = int(values.workers, 'workers', 1, 64);
const keyCount = int(values.keys, 'keys', 1, 64);
const ttlMs = ms(values.ttl, 'ttl');
const intervalMs = ms(values.interval, 'interval');
const seed = values.seed === undefined ? randomBytes(4).readUInt32BE() : int(values.seed, 'seed', 0, 2 ** 32 - 1);
const requested: NemesisName[] = values.nemesis === undefined ? [...NEMESES] : values.nemesis === 'none' || values.nemesis === '' ? []
  : values.nemesis.split(',').map((n) => n.trim()).map((n) => (NEMESES.includes(n as NemesisName) ? (n as NemesisName) : fail(`--nemesis: unknown ${JSON.stringify(n)}`)));
const registerUrl = values.register ?? process.env['HOLDFAST_FAULTS_REGISTER_URL'] ?? DEFAULT_REGISTER_URL;
const waiterTtlMs = 2000;

const runId = randomBytes(3).toString('hex');
const prefix = `f${runId}`;
const { leaves, roots } = runKeys(prefix, keyCount);
const dir = mkdtempSync(join(tmpdir(), `holdfast-faults-${runId}-`));
const random = rng(seed);
const say = (line: string): void => void process.stderr.write(`[faults ${runId}] ${line}\n`);

const events: WorkerEvent[] = [];
const nemeses: NemesisEvent[] = [];
const processes: ProcessEvent[] = [];
let pool = null as WorkerPool | null;
let stack = null as Stack | null;
let admin = null as Locks | null;
const register = new Register(registerUrl, `hf_faults_${runId}`, 'hf-faults admin');
const stopping = new AbortController();
process.on('exit', () => pool?.killAllSync());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping.signal.aborted) process.exit(130);
    say(`${signal}: stopping (again to exit at once)`);
    stopping.abort();
  });
}

/** Every history event of this run's keys (the store may hold others), paging back from the newest. */
async function readHistory(locks: Locks): Promise<HistoryEvent[]> {
  const out: HistoryEvent[] = [];
  let beforeId: number | undefined;
  for (;;) {
    const page = await locks.history({ limit: 10_000, ...(beforeId === undefined ? {} : { beforeId }) });
    if (page.length === 0) return out;
    out.push(...page.filter((e) => e.resources.some((r) => r.key.startsWith(prefix))));
    beforeId = page[page.length - 1]!.id;
  }
}

const sleep = (delay: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, delay));

async function main(): Promise<number> {
  await register.create();
  const names = requested;
  stack = await openStack(storeUrl, { runId, dir, restartable: names.includes('restart-store'), pausable: names.includes('pause-store'), serverStore: values['server-store'] });
  const { use, skipped } = applicable(names, stack);
  say(`store: ${stack.describe}; register: ${registerUrl} schema hf_faults_${runId}; seed ${seed}; run directory ${dir}`);
  if (skipped.length > 0) say(`not applicable: ${skipped.join(', ')}`);
  // Opening the store here applies its migrations once, before the workers start.
  admin = await openLocks(stack.url, { owner: `checker@${runId}`, storeOptions: { ...stack.storeOptions('checker'), ...(stack.kind === 'postgres' ? { applicationName: 'hf-faults admin' } : {}) } });
  await admin.list({ prefix });

  const currentStack = stack;
  // The canary: odd slots lock in a second SQLite file, so the lock service protects nothing and
  // the checker must report it (test/faults/checker.test.ts runs it).
  const split = values.canary === 'split-brain' && stack.kind === 'sqlite' ? `${stack.url}-split` : null;
  if (values.canary !== undefined && split === null) throw new Error('--canary split-brain needs a sqlite: store');
  pool = new WorkerPool({
    count: workerCount,
    name: (slot, gen) => `w${slot}.${gen}@${runId}`,
    config: (slot, gen, name) => ({
      name, store: split !== null && slot % 2 === 1 ? split : currentStack.url, storeOptions: currentStack.storeOptions(name), registerUrl, registerSchema: `hf_faults_${runId}`,
      leaves, roots, ttlMs, waiterTtlMs, seed: (seed + slot * 7919 + gen * 104729) >>> 0,
    }),
    onEvent: (event) => events.push(event),
    onProcess: (event) => {
      processes.push(event);
      if (event.type === 'exit' && !event.expected) say(`worker ${event.w} exited on its own (${event.code ?? event.signal}): ${event.stderr?.trim().split('\n').slice(-5).join(' | ')}`);
    },
  });
  await pool.start();
  say(`${workerCount} workers on ${keyCount} keys for ${durationMs} ms, TTL ${ttlMs} ms, nemeses: ${use.join(', ') || 'none'}`);
  const nemesis = new Nemesis({ names: use, pool, stack, random, ttlMs, intervalMs, record: (event) => nemeses.push(event) });
  const timer = setTimeout(() => stopping.abort(), durationMs);
  try {
    await nemesis.run(stopping.signal);
  } finally {
    clearTimeout(timer);
    await nemesis.finish();
    await pool.stop();
  }

  // Every lease of a dead worker expires and every waiter of one leaves within its TTL.
  // A waiter's queue place in the store outlives its client by the store-side waiterTtlMs (for http, the server's).
  const storeWaiterTtlMs = stack.kind === 'http' ? Math.max(waiterTtlMs, SERVER_DEFAULTS.waiterTtlMs) : waiterTtlMs;
  const settle = Math.max(ttlMs, storeWaiterTtlMs) + 1500;
  say(`workers stopped; waiting ${settle} ms for leases and waiters to run out`);
  await sleep(settle);
  await admin.store.sweep().catch(() => null);
  const finalList = await admin.list({ prefix });
  const record: RunRecord = {
    config: { runId, store: stack.kind, keyPrefix: prefix, ttlMs, waiterTtlMs: storeWaiterTtlMs, waitToleranceMs: ms(values['wait-tolerance'], 'wait-tolerance'),
      outageAllowanceMs: stack.kind === 'etcd' ? ETCD_FAULT_OUTAGE_MS : POSTGRES_DEFAULTS.connectTimeoutMs, clockToleranceMs: 250 },
    events, nemeses, processes, history: await readHistory(admin), register: await register.rows(), registerValues: await register.values(), finalList,
  };
  saveRecord(dir, record);
  return report(record, ` duration=${Math.round(durationMs / 1000)}s workers=${workerCount} keys=${keyCount} seed=${seed}`, dir);
}

/** The one summary line of a run. */
function summaryLine(record: RunRecord, result: CheckResult, extra = ''): string {
  const c = result.counts;
  const faults = NEMESES.map((n) => `${n}=${c.faults[n]}`).join(' ');
  const e = c.explained;
  return (
    `faults: store=${record.config.store}${extra} operations=${c.operations} grants=${c.grants} ` +
    `writes=${c.writesAccepted} accepted/${c.writesRefused} refused/${c.writesUnknown} unknown | faults injected: ${faults} | ` +
    `stale writes rejected=${c.staleRefused} (stale accepted before any newer write=${c.staleAccepted}, shared superseded=${c.sharedSuperseded}) | ` +
    `lost=${c.lost} expired=${c.expired} (self-fenced ${e.selfFenced}, killed ${e.killed}, paused ${e.paused}, release failed ${e.releaseFailed}, orphaned ${e.orphaned}) | ` +
    `max wait overrun=${Math.round(c.maxWaitOverrunMs)}ms (longer: ${c.frozenWaits} while the waiter was frozen, max ${Math.round(c.maxFrozenWaitOverrunMs)}ms; ` +
    `${c.outageWaits} across store outages, max ${Math.round(c.maxOutageWaitOverrunMs)}ms) | ` +
    `violations=${result.violations.length}`
  );
}

/** Checks a record, prints every violation and the summary line; the exit code. */
function report(record: RunRecord, extra: string, into: string | null): number {
  const result = check(record);
  const line = summaryLine(record, result, extra);
  if (into !== null) writeFileSync(join(into, 'summary.txt'), `${line}\n${JSON.stringify(result.violations, null, 1)}\n`);
  for (const v of result.violations.slice(0, 50)) {
    process.stdout.write(`VIOLATION (${v.check}) ${v.message}\n${v.excerpt.map((e) => `    ${JSON.stringify(e)}`).join('\n')}\n`);
  }
  if (result.violations.length > 50) process.stdout.write(`... and ${result.violations.length - 50} more violations (all in summary.txt)\n`);
  process.stdout.write(`${line}\n`);
  return result.violations.length > 0 ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`faults: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  code = 2;
} finally {
  pool?.killAllSync();
  if (values.canary !== undefined && storeUrl.startsWith('sqlite:')) for (const suffix of ['', '-wal', '-shm']) rmSync(`${storeUrl.slice(7)}-split${suffix}`, { force: true });
  await admin?.close().catch(() => {});
  await stack?.close().catch((error: unknown) => say(`cleanup of the store failed: ${String(error)}`));
  await register.drop().catch(() => {});
  await register.close();
  if ((code === 0 && !values.keep) || readdirSync(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  else say(`run directory kept: ${dir}`);
}
process.exit(code);
