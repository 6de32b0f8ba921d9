/**
 * A private MariaDB server for tests (and the fault harness) that kill or restart the database:
 * `mariadb-install-db` into a temporary directory, `mariadbd --user=root` on a free port of
 * 127.0.0.1 with its own socket, pid file and no networking beyond that. The machine's shared
 * server on 3306 is never touched. `kill9()` is a crash (SIGKILL of mariadbd, no shutdown);
 * `start()` starts it again on the same data and port; `destroy()` stops it and deletes the
 * directory, and a process that exits without calling it still kills the server (on 'exit').
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort } from '../postgres/cluster.js';

const run = promisify(execFile);

export const MARIADBD = process.env['HOLDFAST_TEST_MARIADBD'] ?? '/usr/sbin/mariadbd';
export const INSTALL_DB = process.env['HOLDFAST_TEST_MARIADB_INSTALL_DB'] ?? '/usr/bin/mariadb-install-db';

/** Why a private server cannot be made here, or null when it can. */
export function mariadbUnavailable(): string | null {
  for (const tool of [MARIADBD, INSTALL_DB]) if (!existsSync(tool)) return `${tool} does not exist`;
  return null;
}

export interface PrivateMariadbOptions {
  /** Extra `mariadbd` arguments, e.g. `--default-time-zone=+05:00`. */
  args?: string[];
}

export class PrivateMariadb {
  readonly dir: string;
  readonly data: string;
  readonly socket: string;
  port = 0;
  #child: ChildProcess | null = null;
  readonly #args: string[];
  #killOnExit = (): void => {
    try {
      if (this.#child?.pid !== undefined) process.kill(this.#child.pid, 'SIGKILL');
    } catch {
      // Not running.
    }
  };

  private constructor(options: PrivateMariadbOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'holdfast-mariadb-'));
    this.data = join(this.dir, 'data');
    this.socket = join(this.dir, 'mysqld.sock');
    this.#args = options.args ?? [];
  }

  /** The URL of database `test` on this server (root, no password). */
  get url(): string {
    return `mysql://root@127.0.0.1:${this.port}/test`;
  }

  static async create(options: PrivateMariadbOptions = {}): Promise<PrivateMariadb> {
    const server = new PrivateMariadb(options);
    try {
      await run(INSTALL_DB, ['--no-defaults', `--datadir=${server.data}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], {
        maxBuffer: 16 * 1024 * 1024,
      });
      process.once('exit', server.#killOnExit);
      server.port = await freePort();
      await server.start();
      const connection = await mysql.createConnection({ uri: `mysql://root@127.0.0.1:${server.port}/` });
      await connection.query('CREATE DATABASE IF NOT EXISTS test');
      await connection.end();
      return server;
    } catch (error) {
      await server.destroy();
      throw error;
    }
  }

  /** Starts mariadbd on the data directory and port, and waits until it answers. */
  async start(): Promise<void> {
    const child = spawn(MARIADBD, [
      '--no-defaults', `--datadir=${this.data}`, `--port=${this.port}`, '--bind-address=127.0.0.1', `--socket=${this.socket}`,
      `--pid-file=${join(this.dir, 'mysqld.pid')}`, '--user=root', '--skip-grant-tables=0', '--innodb-buffer-pool-size=32M',
      '--innodb-log-file-size=16M', '--innodb-flush-log-at-trx-commit=1', '--skip-log-bin', '--max-connections=200', ...this.#args,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    this.#child = child;
    const deadline = performance.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`mariadbd exited with ${child.exitCode}:\n${output}`);
      try {
        const connection = await mysql.createConnection({ uri: `mysql://root@127.0.0.1:${this.port}/`, connectTimeout: 1000 });
        await connection.end();
        return;
      } catch (error) {
        if (performance.now() > deadline) throw new Error(`mariadbd did not answer in 60 s: ${String(error)}\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** A crash: SIGKILL of mariadbd, waits until it is gone. */
  async kill9(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  }

  /** Stops the server (SIGTERM, a clean shutdown). */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await gone;
  }

  async destroy(): Promise<void> {
    await this.kill9().catch(() => {});
    process.removeListener('exit', this.#killOnExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
