/**
 * A child process of processes.test.ts (compiled with the tests; not a test itself): one
 * `openLocks(url)` on the mysql store, driven by messages. `{ cmd: 'acquire', key | resources, owner?, waitMs }`
 * answers `{ type: 'granted', fence, at }`, `{ cmd: 'release' }` answers `{ type: 'released',
 * released, before }`, `{ cmd: 'loop', key, iterations, file }` runs acquire / append `start
 * FENCE NAME` / pause / append `end FENCE NAME` / release and answers `{ type: 'done' }`, and
 * `{ cmd: 'exit' }` closes everything. Waiters heartbeat every 10 s (waiterTtlMs 30 s), so a
 * grant that arrives sooner was pushed by the change-log watcher, not found by a poll.
 */
import { appendFileSync } from 'node:fs';
import { openLocks } from '../../../src/engine/open.js';
import type { Lease } from '../../../src/engine/lease.js';
import type { MysqlStore } from '../../../src/stores/mysql/store.js';

interface Command {
  cmd: 'acquire' | 'release' | 'loop' | 'exit';
  key?: string;
  /** Instead of `key`: resources of the request, and its owner. */
  resources?: Array<{ key: string }>;
  owner?: string;
  waitMs?: number;
  iterations?: number;
  file?: string;
}

const [url, name] = [process.argv[2]!, process.argv[3]!];
const send = (message: Record<string, unknown>): void => {
  if (process.connected) process.send!(message);
};
/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
const clock = (): number => performance.timeOrigin + performance.now();

const locks = await openLocks(url, { owner: name, waiterTtlMs: 30_000, storeOptions: { poolSize: 2 } });
await (locks.store as MysqlStore).ready();
const queue: Command[] = [];
let wake: (() => void) | null = null;
process.on('message', (message: Command) => {
  queue.push(message);
  wake?.();
});

let lease: Lease | null = null;
try {
  send({ type: 'ready' });
  for (;;) {
    while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const command = queue.shift()!;
    if (command.cmd === 'exit') break;
    if (command.cmd === 'acquire') {
      const options = { waitMs: command.waitMs ?? 0, ttlMs: 30_000, ...(command.owner === undefined ? {} : { owner: command.owner }) };
      lease = await locks.acquire(command.resources ?? command.key!, options);
      send({ type: 'granted', fence: lease.fence, at: clock() });
    } else if (command.cmd === 'release' && lease !== null) {
      const before = clock();
      send({ type: 'released', released: await lease.release(), before });
      lease = null;
    } else if (command.cmd === 'loop') {
      for (let i = 0; i < (command.iterations ?? 10); i++) {
        const held = await locks.acquire(command.key!, { waitMs: 60_000, ttlMs: 10_000 });
        appendFileSync(command.file!, `start ${held.fence} ${name}\n`);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        appendFileSync(command.file!, `end ${held.fence} ${name}\n`);
        await held.release();
      }
      send({ type: 'done' });
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
