/**
 * What the browser tests share: Debian's chromium driven by playwright-core (no browser download;
 * a missing chromium fails the test, it never skips), a real `holdfast serve` in a child process
 * (so a test can stop and restart it on the same port and store), and the CLI as "another process".
 * Everything started here is stopped by the returned `close()`/`stop()`: no browser, server or
 * CLI process outlives a test file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_BIN, startCli, type Ran } from '../support/cli-process.js';
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';

export const CHROMIUM = process.env['HOLDFAST_CHROMIUM'] || '/usr/bin/chromium';
export const BIN = CLI_BIN;
export const IMAGES = new URL('../../../docs/images/', import.meta.url).pathname;

/** Flags without which chromium stalls on this closed network. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface Browser {
  context: BrowserContext;
  /** A new page whose console errors and uncaught exceptions are collected in `problems`. */
  page(viewport: { width: number; height: number }): Promise<Page>;
  /** Console errors and page errors so far, with the time they came (ms since the epoch). */
  readonly problems: { at: number; text: string }[];
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`);
  const userDataDir = mkdtempSync(join(tmpdir(), 'holdfast-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000,
    });
  } catch (error) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw error;
  }
  const problems: { at: number; text: string }[] = [];
  return {
    context,
    problems,
    async page(viewport) {
      const page = await context.newPage();
      await page.setViewportSize(viewport);
      page.on('console', (message: ConsoleMessage) => {
        if (message.type() === 'error') problems.push({ at: Date.now(), text: `${message.text()} (${message.location().url})` });
      });
      page.on('pageerror', (error) => problems.push({ at: Date.now(), text: `uncaught: ${error.message}` }));
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export { freePort } from '../support/free-port.js';

export type { Ran };

/** Runs the holdfast CLI to its end; `.child` is the process (to kill one left waiting). */
export function holdfast(args: string[], env: Record<string, string> = {}): Promise<Ran> & { child: ChildProcess } {
  const run = startCli(args, env);
  return Object.assign(run.done, { child: run.child });
}

/** `holdfast serve` in a child process, on a fixed port so that a restart keeps the page's URL. */
export class ServerProcess {
  #child: ChildProcess | null = null;
  #log = '';
  readonly url: string;

  constructor(readonly options: { store: string; port: number; tokens?: string }) {
    this.url = `http://127.0.0.1:${options.port}`;
  }

  get log(): string {
    return this.#log;
  }

  async start(): Promise<void> {
    const args = ['serve', '--store', this.options.store, '--port', String(this.options.port), '--log-level', 'warn'];
    if (this.options.tokens) args.push('--tokens', this.options.tokens);
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, HOLDFAST_STORE: '', HOLDFAST_TOKENS: '', HOLDFAST_HOST: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    child.stdout!.on('data', (d: Buffer) => (this.#log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.#log += d.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`holdfast serve exited with ${child.exitCode}: ${this.#log}`);
      try {
        const res = await fetch(`${this.url}/readyz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`holdfast serve did not become ready: ${this.#log}`);
      await sleep(50);
    }
  }

  /** SIGTERM (the graceful shutdown), SIGKILL if it takes more than 10 s. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }
}
