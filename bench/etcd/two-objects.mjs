#!/usr/bin/env node
/**
 * etcd hand-off between two store objects (two "processes") on one key: one holds, the other
 * queues; 2 ms after the queued change the holder releases. Prints release() and hand-off
 * (release() called -> the other's acquire returns) p50/p99, and the etcd transactions sent
 * while release() ran (its own, and background re-reads of the root: src/stores/etcd/refresh.ts).
 *
 *   node dist/test/stores/etcd/serve.js &            # prints etcd://host:port,host:port,host:port
 *   node bench/etcd/two-objects.mjs <that URL> [HAND_OFFS=200] [DIST=dist]
 *
 * DIST names another build's output folder (relative to the repository) to compare with, for
 * example a worktree's dist symlinked into the repository.
 */
const [url, handOffs = '200', dist = 'dist'] = process.argv.slice(2);
if (!url?.startsWith('etcd://')) {
  console.error('usage: node bench/etcd/two-objects.mjs etcd://host:port,... [HAND_OFFS] [DIST]');
  process.exit(2);
}
const root = new URL(`../../${dist}/`, import.meta.url);
const { openLocks } = await import(new URL('src/index.js', root).href);
const { EtcdClient } = await import(new URL('src/stores/etcd/client.js', root).href);

let txns = 0;
let counting = false;
const txn = EtcdClient.prototype.txn;
EtcdClient.prototype.txn = function countedTxn(...args) {
  if (counting) txns++;
  return txn.apply(this, args);
};

const N = Number(handOffs);
const prefix = `two-objects-${Math.random().toString(36).slice(2, 8)}`;
const objects = [await openLocks(`${url}/${prefix}`, { owner: 'a' }), await openLocks(`${url}/${prefix}`, { owner: 'b' })];
const releases = [];
const handoffs = [];
let holder = await objects[0].acquire('k', { autoRenew: false });
for (let i = 0; i < N; i++) {
  const waiter = objects[(i + 1) % 2];
  let queued;
  const isQueued = new Promise((resolve) => (queued = resolve));
  const onChange = (change) => {
    if (change.type === 'waiting') queued();
  };
  waiter.on('change', onChange);
  const granted = waiter.acquire('k', { waitMs: 60_000, autoRenew: false });
  await isQueued;
  waiter.off('change', onChange);
  await new Promise((resolve) => setTimeout(resolve, 2));
  const start = performance.now();
  counting = true;
  await holder.release();
  counting = false;
  releases.push(performance.now() - start);
  holder = await granted;
  handoffs.push(performance.now() - start);
}
await holder.release();
await Promise.all(objects.map((o) => o.close()));
const pct = (values, p) => [...values].sort((x, y) => x - y)[Math.floor(p * (values.length - 1))].toFixed(2);
console.log(`${dist}: ${N} hand-offs; release() p50 ${pct(releases, 0.5)} p99 ${pct(releases, 0.99)} ms; hand-off p50 ${pct(handoffs, 0.5)} p99 ${pct(handoffs, 0.99)} ms; etcd transactions while release() ran: ${(txns / N).toFixed(2)} per release`);
