/**
 * The `http` suite's "server CPU" case: holdfast's server and the bare Fastify + Map anchor each in
 * a process of their own (http-server-child.ts), driven by the same client in this process at 64
 * concurrent clients on 64 keys; the server process's CPU time (user + system) per
 * acquire+release pair. In one process the client's cost is in both sides of the ratio; this case
 * shows what the server alone adds.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openLocks } from '../src/index.js';

const CHILD = fileURLToPath(new URL('./http-server-child.js', import.meta.url));

export interface ServerCpu {
  pairsPerSecond: number;
  cpuMicrosPerPair: number;
}

export async function serverCpu(which: 'holdfast' | 'bare', options: { warmupMs: number; durationMs: number; concurrency: number }): Promise<ServerCpu> {
  const child = fork(CHILD, [which], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.once('message', (m) => resolve(String(m)));
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the ${which} server exited (${code})`)));
    });
    const client = await openLocks(url, { owner: 'bench' });
    try {
      const begin = performance.now();
      const measureFrom = begin + options.warmupMs;
      const end = measureFrom + options.durationMs;
      let pairs = 0;
      let started = false;
      await Promise.all(
        Array.from({ length: options.concurrency }, async (_, worker) => {
          while (performance.now() < end) {
            const lease = await client.acquire(`bench/cpu/w${worker}`, { autoRenew: false });
            await lease.release();
            if (performance.now() >= measureFrom) {
              if (!started) {
                started = true;
                child.send('start');
              }
              pairs++;
            }
          }
        }),
      );
      const answer = new Promise<{ cpuMicros: number }>((resolve) => child.once('message', (m) => resolve(m as { cpuMicros: number })));
      child.send('stop');
      const { cpuMicros } = await answer;
      return { pairsPerSecond: pairs / (options.durationMs / 1000), cpuMicrosPerPair: cpuMicros / Math.max(1, pairs) };
    } finally {
      await client.close();
    }
  } finally {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      await exited;
    }
  }
}
