/**
 * Runs benchmark suites and collects their rows. `main.ts` is the command line around it; the
 * smoke test calls it directly.
 */
import { availableParallelism, cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { Recorder, SkipError, type BenchContext, type Profile, type Row, type StoreKind } from './harness.js';
import { contentionSuite } from './suites/contention.js';
import { etcdSuite } from './suites/etcd.js';
import { handoffSuite } from './suites/handoff.js';
import { httpSuite } from './suites/http.js';
import { memorySuite } from './suites/memory.js';
import { mysqlSuite } from './suites/mysql.js';
import { postgresSuite } from './suites/postgres.js';
import { redisSuite } from './suites/redis.js';
import { scaleSuite } from './suites/scale.js';
import { sqliteSuite } from './suites/sqlite.js';

export const SUITES = {
  memory: memorySuite,
  sqlite: sqliteSuite,
  postgres: postgresSuite,
  mysql: mysqlSuite,
  handoff: handoffSuite,
  contention: contentionSuite,
  scale: scaleSuite,
  http: httpSuite,
  etcd: etcdSuite,
  redis: redisSuite,
} satisfies Record<string, (ctx: BenchContext) => Promise<void>>;

export type SuiteName = keyof typeof SUITES;
export const SUITE_NAMES = Object.keys(SUITES) as SuiteName[];
export const STORE_KINDS: readonly StoreKind[] = ['memory', 'sqlite', 'postgres', 'mysql'];
export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';

export interface RunOptions {
  profile: Profile;
  /** @default every suite */
  suites?: readonly SuiteName[];
  /** @default every store */
  stores?: readonly StoreKind[];
  /** @default HOLDFAST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test */
  postgresUrl?: string;
  log?: (message: string) => void;
}

export interface RunResult {
  rows: Row[];
  meta: Record<string, unknown>;
  /** Suites that failed (not skipped). */
  failures: string[];
}

export function machine(): Record<string, unknown> {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    freeMemoryGiB: +(freemem() / 2 ** 30).toFixed(1),
    node: process.version,
    platform: `${process.platform} ${release()}`,
  };
}

const load = (): number[] => loadavg().map((x) => +x.toFixed(2));

export async function runBench(options: RunOptions): Promise<RunResult> {
  const suites = options.suites ?? SUITE_NAMES;
  const rec = new Recorder();
  const log = options.log ?? (() => {});
  const ctx: BenchContext = {
    profile: options.profile,
    rec,
    stores: new Set(options.stores ?? STORE_KINDS),
    suites: new Set(suites),
    postgresUrl: options.postgresUrl ?? (process.env['HOLDFAST_POSTGRES_URL'] || DEFAULT_POSTGRES_URL),
    log,
  };
  Object.assign(rec.meta, { profile: options.profile, startedAt: new Date().toISOString(), loadBefore: load(), machine: machine() });
  const durations: Record<string, number> = {};
  for (const name of suites) {
    const started = performance.now();
    log(`${name}...`);
    try {
      await SUITES[name](ctx);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof SkipError) {
        rec.skip(name, message);
        log(`  skipped: ${message}`);
      } else {
        rec.fail(name, error);
        log(`  FAILED: ${error instanceof Error ? (error.stack ?? message) : message}`);
      }
    }
    durations[name] = Math.round((performance.now() - started) / 100) / 10;
    log(`  ${name}: ${durations[name]} s`);
  }
  Object.assign(rec.meta, { finishedAt: new Date().toISOString(), loadAfter: load(), suiteSeconds: durations });
  return { rows: rec.rows, meta: rec.meta, failures: [...rec.failed] };
}
