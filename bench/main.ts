/**
 * `npm run bench -- [SUITE...] [--quick] [--json FILE] [--stores memory,sqlite,postgres] [--postgres URL]`
 *
 * Runs every suite (or the named ones: memory, sqlite, postgres, handoff, contention, scale, http, etcd) and
 * prints one table per suite with holdfast next to its anchors and the ratios holdfast/anchor of
 * this run. A suite whose store is unreachable is reported as skipped. `--quick` finishes in
 * under two minutes; the full run in under fifteen. Benchmarks are never part of `npm test`.
 */
import { writeFileSync } from 'node:fs';
import { renderTables, type StoreKind } from './harness.js';
import { DEFAULT_POSTGRES_URL, runBench, STORE_KINDS, SUITE_NAMES, type SuiteName } from './run.js';
import { dropLiveSchemas, redact } from './stores.js';
import { etcdTargets } from './suites/etcd.js';
import { redisTargets } from './suites/redis.js';
import { issueTargets } from './targets.js';

const USAGE = `usage: npm run bench -- [${SUITE_NAMES.join('|')}...] [--quick] [--json FILE] [--stores ${STORE_KINDS.join(',')}] [--postgres URL]`;

interface Args {
  suites: SuiteName[];
  quick: boolean;
  json: string | null;
  stores: StoreKind[];
  postgresUrl: string;
}

function parse(argv: readonly string[]): Args {
  const args: Args = {
    suites: [], quick: false, json: null, stores: [...STORE_KINDS],
    postgresUrl: process.env['HOLDFAST_POSTGRES_URL'] || DEFAULT_POSTGRES_URL,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--quick') args.quick = true;
    else if (arg === '--json') args.json = value();
    else if (arg === '--postgres') args.postgresUrl = value();
    else if (arg === '--stores') {
      args.stores = value().split(',').map((s) => s.trim()) as StoreKind[];
      const bad = args.stores.find((s) => !STORE_KINDS.includes(s));
      if (bad) throw new Error(`unknown store ${JSON.stringify(bad)}`);
    } else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else if ((SUITE_NAMES as string[]).includes(arg)) args.suites.push(arg as SuiteName);
    else throw new Error(`unknown argument ${JSON.stringify(arg)}`);
  }
  if (args.suites.length === 0) args.suites = [...SUITE_NAMES];
  return args;
}

/** Ctrl-C: drop the schemas of this run (a SIGKILL leaves `hf_bench_*` schemas behind: drop them by hand). */
function dropSchemasOnInterrupt(): void {
  process.once('SIGINT', () => {
    console.error('\ninterrupted: dropping the benchmark schemas...');
    setTimeout(() => process.exit(130), 5000).unref();
    dropLiveSchemas()
      .then((left) => {
        if (left.length > 0) console.error(`could not drop: ${left.join(', ')}`);
      })
      .finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  dropSchemasOnInterrupt();
  let args: Args;
  try {
    args = parse(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const profile = args.quick ? 'quick' : 'full';
  const argv = process.argv.slice(2).map((a) => (/^postgres(ql)?:\/\//i.test(a) ? redact(a) : a));
  const command = argv.length === 0 ? 'npm run bench' : `npm run bench -- ${argv.join(' ')}`;
  const started = performance.now();
  const result = await runBench({
    profile, suites: args.suites, stores: args.stores, postgresUrl: args.postgresUrl,
    log: (message) => console.error(message),
  });
  const seconds = (performance.now() - started) / 1000;
  const m = result.meta as { machine: Record<string, unknown>; loadBefore: number[]; loadAfter: number[]; postgres?: string };
  const lines = [
    `## holdfast benchmarks (${profile})`,
    '',
    `- command: \`${command}\`, ${new Date().toISOString()}, ${seconds.toFixed(0)} s`,
    `- machine: ${String(m.machine['cpus'])} CPUs (${String(m.machine['cpuModel'])}), ${String(m.machine['memoryGiB'])} GiB, ` +
      `node ${String(m.machine['node'])}, ${String(m.machine['platform'])}${m.postgres ? `, PostgreSQL ${m.postgres}` : ''}`,
    `- load average (1/5/15 min) before: ${m.loadBefore.join(' ')}, after: ${m.loadAfter.join(' ')}`,
    `- postgres: ${args.stores.includes('postgres') ? redact(args.postgresUrl) : 'not used'}`,
    '- rates: median of repeats; latencies: p50/p99 over all samples (ms); holdfast/X: ratio of this run',
    '',
    renderTables(result.rows),
  ];
  const checks = issueTargets(result.rows, [etcdTargets, redisTargets]);
  if (checks.length > 0) lines.push('### targets', '', ...checks, '');
  console.log(lines.join('\n'));
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify({ command, seconds, meta: result.meta, rows: result.rows }, null, 2)}\n`);
    console.error(`wrote ${args.json}`);
  }
  if (result.failures.length > 0) {
    console.error(`failed suites: ${result.failures.join(', ')}`);
    process.exitCode = 1;
  }
}

await main();
