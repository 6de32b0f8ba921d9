/**
 * `http`: acquire+release pairs per second and pair latency through a holdfast server
 * (`startServer` on loopback, the library's http store as the client) at 1 and 64 concurrent
 * clients, on the memory and the sqlite store, next to the same workload on the library
 * directly over the same store, so the HTTP overhead is the ratio holdfast(http)/library.
 * Each client takes its own key, so the pairs measure the request path, not the queue. On memory
 * the anchor of issue 17 runs too: a bare Fastify + Map lock server (bench/bare-http-lock.ts)
 * driven by the same client, so holdfast/bare is the cost of holdfast's server over the least a
 * lock server on Fastify can do (target ≥ 0.7× at 64 clients). A last case runs each server in a
 * process of its own and reads the server's CPU per pair (http-server-cpu.ts).
 */
import { join } from 'node:path';
import { openLocks, startServer, type Locks, type RunningServer } from '../../src/index.js';
import { startBareLockServer, type BareLockServer } from '../bare-http-lock.js';
import { serverCpu } from '../http-server-cpu.js';
import { compare, HOLDFAST, pick, type BenchContext } from '../harness.js';
import { storesOf, tempDir } from '../stores.js';

const CONCURRENCY = [1, 64] as const;
const BARE = 'bare fastify+Map';

export async function httpSuite(ctx: BenchContext): Promise<void> {
  const suite = 'http';
  const timing = pick(ctx, {
    full: { repeats: 3, warmupMs: 1000, durationMs: 3000 },
    quick: { repeats: 1, warmupMs: 200, durationMs: 600 },
    smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
  });
  for (const kind of storesOf(ctx, ['memory', 'sqlite'])) {
    const tmp = tempDir();
    const url = kind === 'memory' ? 'memory:' : `sqlite:${join(tmp.dir, 'locks.db')}`;
    let server: RunningServer | null = null;
    let bare: BareLockServer | null = null;
    const opened: Locks[] = [];
    try {
      // One store, served over HTTP and used directly by the same process.
      const direct = await openLocks(url, { owner: 'bench' });
      opened.push(direct);
      server = await startServer({ store: direct.store, port: 0, logLevel: 'silent', signals: [] });
      const client = await openLocks(server.url, { owner: 'bench' });
      opened.push(client);
      let bareClient: Locks | null = null;
      if (kind === 'memory') {
        bare = await startBareLockServer();
        bareClient = await openLocks(bare.url, { owner: 'bench' });
        opened.push(bareClient);
      }
      for (const concurrency of CONCURRENCY) {
        const pairOn = (locks: Locks, prefix: string) => async (worker: number): Promise<void> => {
          const lease = await locks.acquire(`${prefix}/w${worker}`, { autoRenew: false });
          await lease.release();
        };
        await compare(
          ctx,
          suite,
          `${kind}, ${concurrency} concurrent client${concurrency === 1 ? '' : 's'}`,
          [
            { name: HOLDFAST, op: pairOn(client, 'bench/http') },
            { name: 'library (direct)', op: pairOn(direct, 'bench/direct') },
            ...(bareClient ? [{ name: BARE, op: pairOn(bareClient, 'bench/bare') }] : []),
          ],
          { ...timing, concurrency, latency: true },
        );
      }
    } finally {
      await Promise.allSettled(opened.slice(1).map((l) => l.close()));
      await server?.close();
      await bare?.close();
      await opened[0]?.close();
      tmp.remove();
    }
  }
  if (storesOf(ctx, ['memory']).includes('memory')) {
    const caseName = 'memory, 64 clients, server in its own process';
    const options = { ...timing, concurrency: 64 };
    for (const [subject, which] of [[HOLDFAST, 'holdfast'], [BARE, 'bare']] as const) {
      const rates: number[] = [];
      const cpu: number[] = [];
      for (let r = 0; r < timing.repeats; r++) {
        const run = await serverCpu(which, options);
        rates.push(run.pairsPerSecond);
        cpu.push(run.cpuMicrosPerPair);
      }
      ctx.rec.throughput({ suite, case: caseName, subject, metric: 'pairs/s' }, rates);
      const sorted = [...cpu].sort((a, b) => a - b);
      ctx.rec.add({ suite, case: caseName, subject, metric: 'server CPU/pair', value: sorted[Math.floor(sorted.length / 2)]!, unit: 'µs', n: sorted.length });
    }
  }
}
