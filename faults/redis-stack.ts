/**
 * The `redis://` store under the fault harness. Every run works under a key prefix of its own
 * (`?prefix=hf-faults-<run>`), so its keys are `hf:{hf-faults-<run>}:*` and its connections are
 * named `holdfast:<prefix>` and `holdfast-inbox:<prefix>`.
 *
 * With `restart-store` or `pause-store` the harness starts a private redis-server
 * (test/stores/redis/server.ts) with AOF `appendfsync always` on a free port (the URL's host is
 * then ignored), since only fsync-always keeps every grant across a crash (README, Redis):
 *
 *   restart-store     `kill -9` of redis-server, started again on its AOF
 *   pause-store       SIGSTOP of redis-server for `ms`, then SIGCONT (connections stay open, every
 *                     call hangs), or, every other time, `CLIENT PAUSE ms ALL` (Redis answers
 *                     nothing, time goes on inside it: leases expire meanwhile)
 *   drop-connections  `CLIENT KILL ID` of every connection of the run (one worker's can't be told
 *                     from another's: they share the prefix), operations and inbox alike
 *
 * Without them the URL's server is used as it is and only drop-connections applies to it.
 */
import { createClient } from '@redis/client';
import { command, PrivateRedis, redisServerUnavailable } from '../test/stores/redis/server.js';
import type { Stack, StackOptions } from './stack.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The ids of the connections whose name is one of `names` (from `CLIENT LIST`). */
function clientIds(list: string, names: readonly string[]): string[] {
  const ids: string[] = [];
  for (const line of list.split('\n')) {
    const fields = new Map(line.trim().split(' ').map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)] as const));
    const id = fields.get('id');
    if (id !== undefined && names.includes(fields.get('name') ?? '')) ids.push(id);
  }
  return ids;
}

export async function redisStack(url: string, options: StackOptions): Promise<Stack> {
  let server: PrivateRedis | null = null;
  let base = new URL(url);
  if (options.restartable || options.pausable) {
    const why = redisServerUnavailable();
    if (why !== null) throw new Error(`restart-store and pause-store on redis need a private redis-server: ${why}`);
    server = new PrivateRedis({ appendfsync: 'always' });
    await server.start();
    base = new URL(server.url);
  }
  base.searchParams.delete('prefix');
  const prefix = `hf-faults-${options.runId}`;
  const storeUrl = new URL(base);
  storeUrl.searchParams.set('prefix', prefix);
  const names = [`holdfast:${prefix}`, `holdfast-inbox:${prefix}`];
  let pauses = 0;
  return {
    kind: 'redis',
    url: storeUrl.toString(),
    describe: server ? `redis private redis-server ${base.host} (AOF appendfsync always), prefix ${prefix}` : `redis ${base.host}, prefix ${prefix}`,
    storeOptions: () => ({ historyLimit: 10_000_000 }),
    restart: server
      ? async () => {
          const started = performance.now();
          await server.kill();
          await server.start();
          return `kill -9 redis-server and start again on its AOF: ${Math.round(performance.now() - started)} ms`;
        }
      : null,
    pause: server
      ? async (ms) => {
          if (pauses++ % 2 === 0) {
            server.pause();
            await sleep(ms);
            server.resume();
            return `SIGSTOP redis-server for ${ms} ms`;
          }
          await command(base.toString(), ['CLIENT', 'PAUSE', String(ms), 'ALL']);
          await sleep(ms);
          return `CLIENT PAUSE ${ms} ALL`;
        }
      : null,
    dropConnections: async () => {
      const ids = clientIds(String(await command(base.toString(), ['CLIENT', 'LIST', 'TYPE', 'normal'])), names);
      let killed = 0;
      for (const id of ids) killed += Number(await command(base.toString(), ['CLIENT', 'KILL', 'ID', id]).catch(() => 0));
      return `CLIENT KILL of ${killed} of ${ids.length} connections (all of prefix ${prefix})`;
    },
    close: async () => {
      if (server) {
        await server.destroy();
        return;
      }
      const client = createClient({ url: base.toString() });
      client.on('error', () => {});
      await client.connect();
      try {
        for await (const keys of client.scanIterator({ MATCH: `hf:{${prefix}}:*`, COUNT: 1000 })) if (keys.length > 0) await client.unlink(keys);
      } finally {
        client.destroy();
      }
    },
  };
}
