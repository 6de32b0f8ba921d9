/**
 * The store under test, as the harness sets it up and breaks it:
 *
 *   sqlite:PATH      the file (deleted at the end if the harness created it). `restart-store` is
 *                    done by the nemesis itself: SIGKILL workers mid-transaction (every process
 *                    holding the file), then fresh ones. `drop-connections` does not apply.
 *   postgres://...   with `restart-store`: a private cluster of the harness (`pg_ctl restart -m
 *                    immediate`), the URL's host ignored; otherwise the URL as given. The schema is
 *                    the URL's `?schema=` or a fresh one (dropped at the end). `drop-connections`:
 *                    `pg_terminate_backend` of the workers' connections by `application_name`.
 *   mysql://.../DB   with `restart-store`: a private MariaDB server of the harness (`kill -9` of
 *                    mariadbd, then started again on the same data), the URL's host ignored;
 *                    otherwise the URL's server. The database is a fresh `hf_faults_<run>`
 *                    (dropped at the end). `drop-connections`: `KILL` of every connection to that
 *                    database (MySQL can't tell one worker's connections from another's, so a
 *                    worker's drop drops the run's).
 *   http://H[:P]     a `holdfast serve` child of the harness on that address (port 0 or none: a
 *                    free one) over `serverStore` (default: a temporary SQLite file).
 *                    `restart-store` restarts the server (SIGKILL, then start again on the same
 *                    port); `drop-connections` terminates the server's connections when its store
 *                    is Postgres.
 *   redis://...      a prefix per run; with restart-store or pause-store a private redis-server
 *                    with AOF fsync always (redis-stack.ts): kill -9 and start again, SIGSTOP or
 *                    CLIENT PAUSE; drop-connections: CLIENT KILL of the run's connections.
 *   etcd             a private 3-member etcd cluster of the harness, its peer ports behind proxies
 *                    (etcd-stack.ts); the cluster nemeses kill, pause and partition its members.
 *                    `etcd://...`: a cluster as given (no member faults). A prefix per run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PrivateCluster, clusterUnavailable, freePort } from './cluster.js';
import { etcdStack } from './etcd-stack.js';
import type { ClusterNemesisName } from './history.js';
import { mysqlStack } from './mysql-stack.js';
import { redisStack } from './redis-stack.js';

export interface StackOptions {
  runId: string;
  /** Directory for files the harness creates (a SQLite file, server logs). */
  dir: string;
  /** A private cluster is needed (restart-store on postgres). */
  restartable: boolean;
  /** A private server is needed that the harness can pause (pause-store on redis). */
  pausable: boolean;
  /** The holdfast server's own store, for http. */
  serverStore?: string | undefined;
}

export interface Stack {
  kind: 'sqlite' | 'postgres' | 'mysql' | 'http' | 'etcd' | 'redis';
  /** What the workers open. */
  url: string;
  /** A line saying what runs where. */
  describe: string;
  storeOptions(worker: string): Record<string, unknown>;
  /** Restarts the store (postgres: the private cluster; http: the server); null when the nemesis does it (sqlite). */
  restart: (() => Promise<string>) | null;
  /** Freezes the store for `ms`, then lets it go on (redis: SIGSTOP or CLIENT PAUSE); returns what was done. Absent when it does not apply. */
  pause?: ((ms: number) => Promise<string>) | null;
  /** Terminates store connections: every connection of the run, or one worker's. Null when it does not apply. */
  dropConnections: ((worker: string | null) => Promise<string>) | null;
  /** The store's cluster members, when the harness runs the cluster (etcd): the cluster nemeses. */
  members?: MemberFaults;
  close(): Promise<void>;
}

export interface MemberFaults {
  /** Injects one member fault for `ms`, then undoes it; returns what was done. */
  fault(name: ClusterNemesisName, ms: number, random: () => number): Promise<string>;
}

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** `application_name` of a worker's store connections (its LISTEN connection adds ` listen`). */
export const appName = (runId: string, worker: string): string => `hf-faults ${runId} ${worker}`;

async function adminQuery(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResultRow[]> {
  const client = new pg.Client({ connectionString: url, application_name: 'hf-faults admin', connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Splits `postgres://...?schema=X` into the connection URL and the schema. */
function splitSchema(url: string): { base: string; schema: string | null } {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get('schema');
  parsed.searchParams.delete('schema');
  return { base: parsed.toString(), schema };
}

/** Terminates the backends named `names` exactly, or every one of the run when `names` is null. */
async function terminate(baseUrl: string, runId: string, names: string[] | null): Promise<string> {
  const rows = names === null
    ? await adminQuery(baseUrl, `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE $1`, [`hf-faults ${runId} %`])
    : await adminQuery(baseUrl, `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = ANY($1)`, [names]);
  return `terminated ${rows[0]?.['n'] ?? 0} backends${names === null ? ' (all of the run)' : ` (${names[0]})`}`;
}

async function sqliteStack(url: string): Promise<Stack> {
  const path = url.slice('sqlite:'.length);
  const created = !existsSync(path);
  return {
    kind: 'sqlite', url, describe: `sqlite file ${path}`, restart: null, dropConnections: null,
    storeOptions: () => ({ historyLimit: 1_000_000_000 }),
    close: async () => {
      if (created) for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
    },
  };
}

async function postgresStack(url: string, options: StackOptions): Promise<Stack> {
  const given = splitSchema(url);
  const schema = given.schema ?? `hf_faults_${options.runId}`;
  let cluster: PrivateCluster | null = null;
  let base = given.base;
  if (options.restartable) {
    const why = clusterUnavailable();
    if (why !== null) throw new Error(`restart-store on postgres needs a private cluster: ${why}`);
    cluster = await PrivateCluster.create();
    base = cluster.url;
  }
  const storeUrl = `${base}${base.includes('?') ? '&' : '?'}schema=${encodeURIComponent(schema)}`;
  return {
    kind: 'postgres',
    url: storeUrl,
    describe: cluster ? `postgres private cluster ${base} schema ${schema}` : `postgres ${base} schema ${schema}`,
    storeOptions: (worker) => ({ applicationName: appName(options.runId, worker), poolSize: 3, historyLimit: 1_000_000_000 }),
    restart: cluster
      ? async () => {
          const started = performance.now();
          await cluster.restart();
          return `pg_ctl restart -m immediate: ${Math.round(performance.now() - started)} ms`;
        }
      : null,
    dropConnections: (worker) =>
      terminate(base, options.runId, worker === null ? null : [appName(options.runId, worker), `${appName(options.runId, worker)} listen`]),
    close: async () => {
      if (cluster) await cluster.destroy();
      else if (given.schema === null) await adminQuery(base, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    },
  };
}

async function httpStack(url: string, options: StackOptions): Promise<Stack> {
  const parsed = new URL(url);
  const host = parsed.hostname || '127.0.0.1';
  const port = parsed.port === '' || parsed.port === '0' ? await freePort() : Number(parsed.port);
  const backing = options.serverStore ?? `sqlite:${join(options.dir, 'server.db')}`;
  const inner = backing.startsWith('sqlite:') ? await sqliteStack(backing) : await postgresStack(backing, { ...options, restartable: false });
  // The server's own store connections are named too, so drop-connections can find them.
  let serverStoreUrl = inner.url;
  if (inner.kind === 'postgres') serverStoreUrl += `&application_name=${encodeURIComponent(appName(options.runId, 'server'))}`;
  let child: ChildProcess | null = null;
  let stderr = '';
  const base = `http://${host}:${port}`;

  const start = async (): Promise<void> => {
    stderr = '';
    child = spawn(process.execPath, [CLI, 'serve', '--store', serverStoreUrl, '--host', host, '--port', String(port), '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        // /healthz, not /readyz: /readyz answers 503 on a Postgres store (its probe lists the
        // prefix "\u0000", which PostgreSQL text refuses). The harness's own list() probes the store.
        const answer = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (answer.ok) return;
      } catch {
        // not up yet
      }
      if (child.exitCode !== null || performance.now() > deadline) throw new Error(`holdfast serve did not come up on ${base}:\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const kill = async (): Promise<void> => {
    const running = child;
    if (running === null || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  process.once('exit', () => child?.kill('SIGKILL'));
  await start();
  return {
    kind: 'http',
    url: base,
    describe: `holdfast serve ${base} over ${inner.describe}`,
    storeOptions: () => ({}),
    restart: async () => {
      const started = performance.now();
      await kill();
      await start();
      return `holdfast serve SIGKILL and restart: ${Math.round(performance.now() - started)} ms`;
    },
    dropConnections: inner.kind === 'postgres' ? () => terminate(splitSchema(inner.url).base, options.runId, [appName(options.runId, 'server'), `${appName(options.runId, 'server')} listen`]) : null,
    close: async () => {
      await kill();
      await inner.close();
    },
  };
}

export async function openStack(url: string, options: StackOptions): Promise<Stack> {
  if (/^sqlite:/i.test(url)) return sqliteStack(url);
  if (/^postgres(ql)?:\/\//i.test(url)) return postgresStack(url, options);
  if (/^(mysql|mariadb):\/\//i.test(url)) return mysqlStack(url, options);
  if (/^http:\/\//i.test(url)) return httpStack(url, options);
  if (/^etcd(:|$)/i.test(url)) return etcdStack(url, options);
  if (/^rediss?:\/\//i.test(url)) return redisStack(url, options);
  throw new Error(`--store: expected sqlite:PATH, postgres://..., mysql://..., redis://..., http://HOST[:PORT], etcd or etcd://..., got ${JSON.stringify(url)}`);
}
