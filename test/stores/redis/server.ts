/**
 * A private redis-server for tests that kill, pause or restart Redis: its own free port on
 * 127.0.0.1 and its own temp directory (AOF and RDB files). The machine's shared Redis is never
 * touched. `kill()` is `kill -9` (what a crash does), `start()` starts it again on the same port
 * and directory (replaying the AOF), `destroy()` stops it and deletes the directory. A process
 * that exits without `destroy()` still kills the server (synchronously, on 'exit').
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createClient } from '@redis/client';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../postgres/cluster.js';

export const REDIS_SERVER = process.env['HOLDFAST_TEST_REDIS_SERVER'] ?? 'redis-server';

/** One command on a short-lived connection of its own (named `hf-admin`, so never one of a store's). */
export async function command(url: string, args: string[]): Promise<unknown> {
  const client = createClient({ url, name: 'hf-admin', socket: { connectTimeout: 5000, reconnectStrategy: false } });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

/** Why a private redis-server can't be started here, or null when it can. */
export function redisServerUnavailable(): string | null {
  const run = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  if (run.error) return `${REDIS_SERVER} can't be run: ${run.error.message}`;
  return run.status === 0 ? null : `${REDIS_SERVER} --version exited with ${run.status}`;
}

export interface PrivateRedisOptions {
  /** `appendonly yes` with this fsync policy; `null`: no persistence at all (no AOF, no RDB). */
  appendfsync: 'always' | 'everysec' | 'no' | null;
  /** Another server's port: start as its replica. */
  replicaOf?: number | undefined;
}

export class PrivateRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'holdfast-redis-'));
  port = 0;
  #child: ChildProcess | null = null;
  readonly #options: PrivateRedisOptions;
  #killOnExit = (): void => {
    this.#child?.kill('SIGKILL');
  };

  constructor(options: PrivateRedisOptions) {
    this.#options = options;
    process.on('exit', this.#killOnExit);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /**
   * Starts the server and waits until it answers PING; with `loading: true` until it answers at
   * all (a server still reading its AOF answers LOADING). `args`: more redis-server arguments.
   */
  async start(options: { args?: readonly string[]; loading?: boolean } = {}): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const { appendfsync, replicaOf } = this.#options;
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--daemonize', 'no',
      '--appendonly', appendfsync === null ? 'no' : 'yes', '--protected-mode', 'no', '--loglevel', 'warning', '--repl-diskless-sync-delay', '0',
    ];
    if (appendfsync !== null) args.push('--appendfsync', appendfsync);
    if (replicaOf !== undefined) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    args.push(...(options.args ?? []));
    const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    this.#child = child;
    child.once('exit', () => {
      if (this.#child === child) this.#child = null;
    });
    const deadline = Date.now() + 10_000;
    const answered = (reply: string | null): boolean => reply === '+PONG' || (options.loading === true && reply?.startsWith('-LOADING') === true);
    while (!answered(await ping(this.port))) {
      if (this.#child !== child) throw new Error(`redis-server exited while starting on port ${this.port}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${this.port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** `kill -9`: nothing is flushed that the fsync policy had not flushed already. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP / SIGCONT: the server freezes with its connections open. */
  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  async destroy(): Promise<void> {
    this.resume();
    await this.kill();
    process.off('exit', this.#killOnExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The first line of a Redis's answer to PING on the port (`+PONG`, `-LOADING ...`), or null when none came. */
function ping(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let data = '';
    const done = (reply: string | null): void => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(500, () => done(null));
    socket.once('error', () => done(null));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      const end = data.indexOf('\r\n');
      if (end >= 0) done(data.slice(0, end));
    });
  });
}
