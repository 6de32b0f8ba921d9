/**
 * A private PostgreSQL cluster for tests that stop or restart the server (restart.test.ts): a
 * temporary directory, `initdb` as the `postgres` OS user (through `runuser` when the tests run
 * as root), a free port on 127.0.0.1, its socket in its own directory. The machine's shared
 * cluster is never touched. `destroy()` stops it and deletes the directory; a process that exits
 * without calling it still stops the server (synchronously, on 'exit').
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../support/free-port.js';

export { freePort };

const run = promisify(execFile);

export const PG_BIN = process.env['HOLDFAST_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid?.() === 0;

/** Why a private cluster cannot be made here, or null when it can. */
export function clusterUnavailable(): string | null {
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(PG_BIN, tool))) return `${join(PG_BIN, tool)} does not exist (set HOLDFAST_TEST_PG_BIN)`;
  }
  if (isRoot) {
    try {
      execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
    } catch {
      return 'running as root, and there is no "postgres" OS user to run initdb as (initdb refuses root)';
    }
  }
  return null;
}

/** The command line that runs a PostgreSQL tool as the postgres OS user. */
function asPostgres(tool: string, args: string[]): [string, string[]] {
  return isRoot ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args]] : [join(PG_BIN, tool), args];
}


export class PrivateCluster {
  readonly dir: string;
  readonly data: string;
  port = 0;
  #stopOnExit = (): void => {
    try {
      const [command, args] = asPostgres('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', 'stop']);
      execFileSync(command, args, { stdio: 'ignore' });
    } catch {
      // Not running.
    }
  };

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'holdfast-pg-cluster-'));
    this.data = join(this.dir, 'data');
  }

  /** initdb (trust, user postgres) and start on a free port. */
  static async create(): Promise<PrivateCluster> {
    const cluster = new PrivateCluster();
    try {
      if (isRoot) {
        const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
        const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
        chownSync(cluster.dir, uid, gid);
      }
      await cluster.#tool('initdb', ['-D', cluster.data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
      process.once('exit', cluster.#stopOnExit);
      for (let attempt = 1; ; attempt++) {
        cluster.port = await freePort();
        try {
          await cluster.start();
          break;
        } catch (error) {
          if (attempt >= 3) throw error;
        }
      }
      return cluster;
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async #tool(tool: string, args: string[]): Promise<void> {
    const [command, argv] = asPostgres(tool, args);
    try {
      await run(command, argv, { timeout: 60_000 });
    } catch (error) {
      const e = error as { stderr?: string; stdout?: string; message?: string };
      throw new Error(`${tool} ${args.join(' ')} failed: ${e.message ?? String(error)}\n${e.stderr ?? ''}${e.stdout ?? ''}\n${this.log()}`);
    }
  }

  /** The end of the server log, for failure messages. */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  }

  #options(): string {
    return `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1`;
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    await this.#tool('pg_ctl', ['-D', this.data, '-o', this.#options(), '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  /** Stops the server at once, as a crash would: no checkpoint, clients cut off (recovery replays the WAL on start). */
  async stop(): Promise<void> {
    await this.#tool('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
  }

  /** `pg_ctl restart -m immediate`. */
  async restart(): Promise<void> {
    await this.#tool('pg_ctl', ['-D', this.data, '-o', this.#options(), '-l', join(this.dir, 'server.log'), '-m', 'immediate', '-w', '-t', '60', 'restart']);
  }

  /** Resolves once a query succeeds. */
  async reachable(timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        return;
      } catch (error) {
        if (performance.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        await client.end().catch(() => {});
      }
    }
  }

  /** `pg_postmaster_start_time()` in ms: tells one run of the server from the next. */
  async startedAt(): Promise<number> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => {});
    await client.connect();
    try {
      const { rows } = await client.query<{ t: Date }>('SELECT pg_postmaster_start_time() AS t');
      return rows[0]!.t.getTime();
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Stops the server (if running) and deletes the directory. */
  async destroy(): Promise<void> {
    process.removeListener('exit', this.#stopOnExit);
    if (existsSync(join(this.data, 'postmaster.pid'))) await this.stop().catch(() => this.#stopOnExit());
    rmSync(this.dir, { recursive: true, force: true });
  }
}
