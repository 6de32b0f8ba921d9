/**
 * A PgBouncer in transaction pooling mode in front of a PostgreSQL server, for tests that prove
 * the store needs no session state: every call may land on another server connection, and
 * several clients share each one. Its own temporary directory (config, log), a free port on
 * 127.0.0.1, `auth_type = trust`; run as the `postgres` OS user when the tests run as root
 * (pgbouncer refuses root). `stop()` ends it; a process that exits without calling it still
 * kills it (on 'exit').
 *
 * PgBouncer must be installed (`apt-get install pgbouncer`; `.ci/run` installs it): a missing
 * binary is an error, never a skip. `HOLDFAST_TEST_PGBOUNCER` names another binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './cluster.js';

export const PGBOUNCER_BIN = process.env['HOLDFAST_TEST_PGBOUNCER'] ?? '/usr/sbin/pgbouncer';
const isRoot = process.getuid?.() === 0;

export interface PgBouncer {
  /** The URL of `database` through the proxy. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

async function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts a PgBouncer in front of `upstream` (a postgres:// URL with host, port, user and
 * database). `poolSize` server connections per database and user: fewer than the clients, so
 * that clients share them.
 */
export async function startPgBouncer(upstream: string, options: { poolSize?: number } = {}): Promise<PgBouncer> {
  if (!existsSync(PGBOUNCER_BIN)) {
    throw new Error(`${PGBOUNCER_BIN} does not exist: install PgBouncer (apt-get install pgbouncer) or set HOLDFAST_TEST_PGBOUNCER`);
  }
  // The free port may be taken by another process before PgBouncer binds it (tests run in
  // parallel): then PgBouncer exits, and another port is tried.
  for (let attempt = 1; ; attempt++) {
    const started = await startOnce(upstream, options);
    if (started !== 'port taken') return started;
    if (attempt === 5) throw new Error('pgbouncer did not start: five free ports were taken before it could bind one');
  }
}

async function startOnce(upstream: string, options: { poolSize?: number }): Promise<PgBouncer | 'port taken'> {
  const target = new URL(upstream);
  const database = decodeURIComponent(target.pathname.replace(/^\//, '')) || 'postgres';
  const user = decodeURIComponent(target.username) || 'postgres';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-pgbouncer-'));
  // The postgres OS user writes the log and pid file here.
  chmodSync(dir, 0o777);
  const ini = join(dir, 'pgbouncer.ini');
  const users = join(dir, 'users.txt');
  writeFileSync(users, `"${user}" ""\n`, { mode: 0o644 });
  writeFileSync(
    ini,
    [
      '[databases]',
      `${database} = host=${target.hostname} port=${target.port || 5432} dbname=${database} user=${user}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${users}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 4}`,
      'max_client_conn = 1000',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const args = isRoot ? ['-u', 'postgres', ini] : [ini];
  const child: ChildProcess = spawn(PGBOUNCER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = (): string => {
    try {
      return readFileSync(join(dir, 'pgbouncer.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  };
  // Ready when this PgBouncer says it listens on the port (something else may accept there) and
  // still runs.
  const giveUp = Date.now() + 10_000;
  while (!(log().includes(`listening on 127.0.0.1:${port}`) && child.exitCode === null && (await accepting(port)))) {
    if (child.exitCode !== null || Date.now() > giveUp) {
      child.kill('SIGKILL');
      process.removeListener('exit', killOnExit);
      const why = stderr.trim() || log() || `exit ${child.exitCode}`;
      rmSync(dir, { recursive: true, force: true });
      if (child.exitCode !== null && /address already in use/i.test(why)) return 'port taken';
      throw new Error(`pgbouncer did not start: ${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const url = new URL(upstream);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null) {
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
