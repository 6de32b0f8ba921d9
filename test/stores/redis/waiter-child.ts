/**
 * A waiter in a process of its own, for push.test.ts: `node waiter-child.js URL KEY` queues for
 * KEY (waiting up to 20 s, heartbeats every 20 s: a grant that arrives sooner was pushed),
 * prints `queued`, then `granted <fence> <Date.now()>` once granted, releases and exits.
 */
import { openLocks } from '../../../src/index.js';

const [url, key] = process.argv.slice(2) as [string, string];
const locks = await openLocks(url, { owner: 'child', waiterTtlMs: 60_000 });
const stop = locks.store.watch((change) => {
  if (change.type === 'waiting') process.stdout.write('queued\n');
});
const lease = await locks.acquire(key, { waitMs: 20_000, ttlMs: 10_000 });
process.stdout.write(`granted ${lease.fence} ${Date.now()}\n`);
stop();
await lease.release();
await locks.close();
