/**
 * The `holdfast` binary of this build as a child process, for tests that drive the CLI. The
 * store/server/token variables of the test's own environment are cleared so only `env` configures it.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** The compiled CLI entry point. */
export const CLI_BIN = new URL('../../src/cli/main.js', import.meta.url).pathname;

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Settles when the process has exited and its output is closed. */
  done: Promise<Ran>;
  /** What it printed so far. */
  stdout(): string;
  stderr(): string;
}

const CLEARED = { HOLDFAST_STORE: '', HOLDFAST_SERVER: '', HOLDFAST_TOKEN: '', HOLDFAST_TOKENS: '', HOLDFAST_HOST: '', HOLDFAST_PORT: '' };

/** Starts `holdfast ...args` with `env` on top of the cleared environment. */
export function startCli(args: string[], env: Record<string, string> = {}, cwd?: string): CliProcess {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    env: { ...process.env, ...CLEARED, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd === undefined ? {} : { cwd }),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Ran>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done, stdout: () => stdout, stderr: () => stderr };
}
