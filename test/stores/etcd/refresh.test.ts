/**
 * The etcd store's background re-read of a root it holds a lease on (src/stores/etcd/refresh.ts),
 * on a private 3-member cluster of this file:
 *   - a release that follows another process's write to the root commits at the first try;
 *   - reliability finding 10: a re-read that lands while a batch prepares must not let the batch
 *     miss a root. X holds `b/x`; Y holds `c` and queues a waiter on `b/x` and `c`; X's re-read of
 *     root `b` (which Y wrote) is held back until just after X starts to release. The waiter must stay queued
 *     (Y still holds `c`): a batch that took its roots from the old copy of `b` and its table from
 *     the re-read one saw the waiter but not root `c`, granted it, and did not compare `c`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openLocks } from '../../../src/engine/open.js';
import type { Locks } from '../../../src/engine/locks.js';
import { EtcdClient, type Compare, type TxnOp } from '../../../src/stores/etcd/client.js';
import { Layout } from '../../../src/stores/etcd/layout.js';
import { background, isPending } from '../../conformance/helpers.js';
import { clusterUnavailable, EtcdCluster } from './cluster.js';

const unavailable = clusterUnavailable();
if (unavailable && process.env['CI']) throw new Error(`CI needs etcd for the etcd store tests: ${unavailable}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves at the first `waiting` change of `locks` (its own request queued). */
function queuedOnce(locks: Locks): Promise<void> {
  return new Promise((resolve) => {
    const onChange = (change: { type: string }): void => {
      if (change.type !== 'waiting') return;
      locks.off('change', onChange);
      resolve();
    };
    locks.on('change', onChange);
  });
}

describe('etcd store: reading a held root again', { skip: unavailable ?? false }, () => {
  let cluster: EtcdCluster;
  const opened: Locks[] = [];
  const txn = EtcdClient.prototype.txn;
  /** Plain reads (no compares) by `holdClient` whose first range starts at this key wait for `gate` first. */
  let holdReadsOf: string | null = null;
  let holdClient: EtcdClient | null = null;
  /** While true, the client of every transaction becomes `holdClient`. */
  let capture = false;
  let gate: Promise<void> = Promise.resolve();
  /** Reads held at the gate so far. */
  let held = 0;
  /** Transactions with compares (operations' commits and their retries; not plain reads). */
  let commits = 0;
  /** Plain reads by `holdClient` of the root at `countReadsOf` that have answered. */
  let countReadsOf: string | null = null;
  let readsDone = 0;

  before(async () => {
    cluster = await EtcdCluster.start();
    EtcdClient.prototype.txn = async function heldTxn(this: EtcdClient, compares: Compare[], success: TxnOp[], failure: TxnOp[], signal?: AbortSignal) {
      if (compares.length > 0) commits++;
      if (capture) holdClient = this;
      const first = success[0];
      /** A plain read by the held client whose first range starts at `key`. */
      const reads = (key: string | null): boolean =>
        key !== null && this === holdClient && compares.length === 0 && first !== undefined && 'range' in first && first.range.key === key;
      if (reads(holdReadsOf)) {
        held++;
        await gate;
      }
      const result = await txn.call(this, compares, success, failure, signal);
      if (reads(countReadsOf)) readsDone++;
      return result;
    };
  });
  after(async () => {
    EtcdClient.prototype.txn = txn;
    await Promise.allSettled(opened.map((l) => l.close()));
    await cluster?.destroy();
  });

  async function open(owner: string, prefix: string): Promise<Locks> {
    // Waiters' heartbeats (polls, with compares) every 20 s: none falls into a counted release.
    const locks = await openLocks(cluster.url, { owner, waiterTtlMs: 60_000, storeOptions: { prefix } });
    opened.push(locks);
    return locks;
  }

  /** Waits until `done()` holds, checking every 5 ms, for at most `ms`. */
  async function until(done: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = performance.now() + ms;
    while (!done()) {
      if (performance.now() > deadline) assert.fail(`${what} within ${ms} ms`);
      await sleep(5);
    }
  }

  test('a release after another process queued on the root is one transaction', async () => {
    const prefix = 'refresh-one/';
    const x = await open('x', prefix);
    const y = await open('y', prefix);
    capture = true; // x's store client: the only one in use now
    let lease = await x.acquire('k', { autoRenew: false });
    capture = false;
    countReadsOf = new Layout(prefix).root('k');
    const attempts: number[] = [];
    for (let i = 0; i < 10; i++) {
      const reads = readsDone;
      const queued = queuedOnce(y);
      const next = background(y.acquire('k', { waitMs: 10_000, autoRenew: false }));
      await queued;
      await until(() => readsDone > reads, 5000, "x's watch saw y's write and x read the root again");
      const before = commits;
      await lease.release();
      attempts.push(commits - before);
      await (await next).release();
      lease = await x.acquire('k', { autoRenew: false });
    }
    await lease.release();
    countReadsOf = null;
    assert.deepEqual(attempts, Array.from({ length: 10 }, () => 1), 'each release committed at its first transaction');
  });

  test('a re-read that lands while a release prepares does not let it grant past a root it did not read', async () => {
    const prefix = 'refresh-two/';
    const x = await open('x', prefix);
    const y = await open('y', prefix);
    capture = true; // x's store client: the only one in use now
    const lease = await x.acquire('b/x', { autoRenew: false });
    capture = false;
    const c = await y.acquire('c', { autoRenew: false });
    holdReadsOf = new Layout(prefix).root('b');
    let letThrough = (): void => {};
    gate = new Promise((resolve) => (letThrough = resolve));
    try {
      const queued = queuedOnce(y);
      const waiter = background(y.acquire(['b/x', 'c'], { waitMs: 20_000, autoRenew: false }));
      await queued;
      await sleep(200);
      assert.ok(held >= 1, "x's re-read of root b (which y wrote) is held at the gate");
      // The release starts while the re-read is held, which then lands at once: before the
      // release prepares (it waits for re-reads first), or, were it let in, while it prepares.
      const releasing = lease.release();
      await sleep(5);
      letThrough();
      await releasing;
      assert.ok(await isPending(waiter, 500), 'the waiter on b/x and c was granted while y still holds c');
      const table = await y.list();
      assert.deepEqual(table.locks.filter((l) => l.key === 'c').map((l) => l.owner), ['y']);
      holdReadsOf = null;
      await c.release();
      await (await waiter).release();
    } finally {
      holdReadsOf = null;
      letThrough();
    }
  });
});
