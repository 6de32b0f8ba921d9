/**
 * A child process of processes.test.ts (compiled with the tests; not a test itself). It opens
 * `openLocks(url, { storeOptions: { schema } })` and, by its JSON argument:
 *   mode 'loop':  after a `go` message, `iterations` times: acquire `key` (waiting), append
 *                 `start FENCE NAME` to `file`, stay a moment, append `end FENCE NAME`, release.
 *   mode 'agent': obeys messages `{ cmd: 'acquire' | 'release' | 'exit' }` and answers each.
 * It sends `{ type: 'ready' }` once its store is migrated and listening, answers errors as
 * `{ type: 'error', message }`, and exits by itself once it has closed everything.
 */
import { appendFileSync } from 'node:fs';
import { openLocks } from '../../../src/engine/open.js';
import type { Lease } from '../../../src/engine/lease.js';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';

interface Config {
  mode: 'loop' | 'agent';
  url: string;
  schema: string;
  key: string;
  name: string;
  file?: string;
  iterations?: number;
}

interface Command {
  cmd: 'go' | 'acquire' | 'release' | 'exit';
  waitMs?: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const send = (message: Record<string, unknown>): void => {
  if (process.connected) process.send!(message);
};
/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
const clock = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const locks = await openLocks(config.url, {
  owner: config.name,
  // Long heartbeats: a waiter that is granted quickly was woken by a push, not by its own poll.
  waiterTtlMs: 30_000,
  storeOptions: { schema: config.schema, poolSize: 2, applicationName: `hf-test-worker ${config.name}` },
});
await (locks.store as PostgresStore).ready();

const messages: Command[] = [];
let wake: (() => void) | null = null;
process.on('message', (message: Command) => {
  messages.push(message);
  wake?.();
});
async function next(): Promise<Command> {
  while (messages.length === 0) await new Promise<void>((resolve) => (wake = resolve));
  wake = null;
  return messages.shift()!;
}

try {
  send({ type: 'ready' });
  if (config.mode === 'loop') {
    await next();
    for (let i = 0; i < (config.iterations ?? 10); i++) {
      const lease = await locks.acquire(config.key, { waitMs: 60_000, ttlMs: 10_000 });
      appendFileSync(config.file!, `start ${lease.fence} ${config.name}\n`);
      await sleep(Math.random() * 4);
      if (lease.signal.aborted) throw new Error(`lease ${lease.fence} was lost in the critical section`);
      appendFileSync(config.file!, `end ${lease.fence} ${config.name}\n`);
      await lease.release();
    }
    send({ type: 'done' });
  } else {
    let lease: Lease | null = null;
    for (;;) {
      const command = await next();
      if (command.cmd === 'exit') break;
      if (command.cmd === 'acquire') {
        lease = await locks.acquire(config.key, { waitMs: command.waitMs ?? 0, ttlMs: 30_000 });
        send({ type: 'granted', fence: lease.fence, at: clock() });
      } else if (command.cmd === 'release' && lease !== null) {
        const before = clock();
        const released = await lease.release();
        send({ type: 'released', released, before, after: clock() });
        lease = null;
      }
    }
  }
} catch (error) {
  send({ type: 'error', message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  process.exitCode = 1;
} finally {
  await locks.close();
  process.removeAllListeners('message');
  if (process.connected) process.disconnect();
}
