/** Shared helpers of the sqlite store tests: temp directories, requests, worker processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { validateRequest, type RequestInput } from '../../../src/model/request.js';
import type { LockRequest } from '../../../src/model/types.js';

/** A fresh directory under the OS temp dir, and a function that removes it. */
export function tempDir(name: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `holdfast-sqlite-${name}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A validated request (`id` optional: a fresh lease id by default). */
export function request(input: RequestInput, id?: string): LockRequest {
  return validateRequest({ ttlMs: 60_000, ...input }, id).request;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One line the worker printed (JSON), with the parent's arrival time. */
export interface WorkerEvent {
  event: string;
  at: number;
  [field: string]: unknown;
}

export interface Worker {
  child: ChildProcess;
  /** Resolves with the first event named `name` (already received or next). */
  next(name: string, timeoutMs?: number): Promise<WorkerEvent>;
  /** Resolves with the exit code; rejects with the worker's stderr when it is not 0. */
  done: Promise<number>;
  send(line: string): void;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** Starts `worker.js MODE JSON` in a child node process. */
export function startWorker(mode: string, args: Record<string, unknown>): Worker {
  const child = spawn(process.execPath, [WORKER, mode, JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const events: WorkerEvent[] = [];
  const waiting: { name: string; resolve: (e: WorkerEvent) => void }[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const event = { ...(JSON.parse(line) as { event: string }), at: performance.now() };
    events.push(event);
    for (const w of waiting.filter((x) => x.name === event.event)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve(event);
    }
  });
  const done = new Promise<number>((resolve, reject) => {
    child.on('exit', (code, signal) => {
      if (code === 0) resolve(0);
      else reject(new Error(`worker ${mode} exited with ${code ?? signal}: ${stderr}`));
    });
  });
  done.catch(() => {});
  return {
    child,
    done,
    send: (line) => child.stdin!.write(`${line}\n`),
    next(name, timeoutMs = 20_000) {
      const seen = events.find((e) => e.event === name);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`worker ${mode}: no "${name}" within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
        done.catch(reject);
        waiting.push({ name, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      });
    },
  };
}
