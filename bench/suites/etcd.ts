/**
 * `etcd`: holdfast's etcd store against etcd's own lock API on the same private 3-member
 * cluster, in one run (`npm run bench -- etcd`):
 *
 *   etcd-lock    the v3 `Lock` service (`etcdctl lock` semantics: `Lock(name, lease)` blocks in
 *                the server until the caller holds the lock, `Unlock(key)` deletes its key),
 *                each client on an etcd lease of its own, through the same JSON gateway and the
 *                same HTTP client code as the store, so both pay the same transport
 *   etcd-mutex   the `concurrency.Mutex` recipe done from Node (uncontended pairs only): one
 *                transaction `IF create_revision(pfx/lease) == 0 THEN put ELSE get` + range of
 *                the owner key (first by create revision), then a delete to unlock
 *
 * Cases: uncontended pairs/s and pair latency with 1 caller and with 16 callers (each on its own
 * key); hand-off (release → the next waiter holds the lock) p50/p99 with 1 and with 20 waiters
 * on one key, every client its own store object (its own "process"). A holder releases only once
 * every other client is queued (holdfast: the store queued its request; etcd-lock: their keys
 * exist), so a sample is a real hand-off. Holdfast adds to what etcd's lock does: fairness across keys, shared
 * modes and limits, hierarchical keys, lock-delay, fences checked by its register.
 */
import { randomBytes } from 'node:crypto';
import { openLocks, type Locks } from '../../src/index.js';
import { b64, EtcdClient, prefixEnd } from '../../src/stores/etcd/client.js';
import { EtcdCluster, clusterUnavailable } from '../../test/stores/etcd/cluster.js';
import { holdfastHandoffSubject, measureForeignHandoff as measureHandoff, type HandoffSubject } from '../foreign-handoff.js';
import { compare, HOLDFAST, pick, SkipError, summarize, type BenchContext } from '../harness.js';

const endpointsOf = (cluster: EtcdCluster): string[] => cluster.members.map((m) => `127.0.0.1:${m.clientPort}`);

/** One etcd client with a lease of its own, for the Lock service and the Mutex recipe. */
async function lockClient(cluster: EtcdCluster): Promise<{ client: EtcdClient; lease: string }> {
  const client = new EtcdClient({ endpoints: endpointsOf(cluster), requestTimeoutMs: 30_000 });
  return { client, lease: await client.grantLease(300) };
}

async function lockServiceLock(c: { client: EtcdClient; lease: string }, key: string): Promise<() => Promise<void>> {
  const answer = (await c.client.call('/v3/lock/lock', { name: b64(key), lease: c.lease })) as { key?: string };
  if (answer.key === undefined) throw new Error('etcd Lock answered without a key');
  return async () => {
    await c.client.call('/v3/lock/unlock', { key: answer.key });
  };
}

/** concurrency.Mutex.TryLock's transaction, uncontended: holds when its key is the first by create revision. */
async function mutexPair(c: { client: EtcdClient; lease: string }, pfx: string): Promise<void> {
  const mine = `${pfx}/${c.lease}`;
  const result = await c.client.txn(
    [{ key: mine, target: 'create', equals: 0 }],
    [{ put: { key: mine, value: '', lease: c.lease } }, { range: { key: `${pfx}/`, rangeEnd: prefixEnd(`${pfx}/`) } }],
    [{ range: { key: mine } }, { range: { key: `${pfx}/`, rangeEnd: prefixEnd(`${pfx}/`) } }],
  );
  const owners = result.ranges[result.ranges.length - 1] ?? [];
  const first = owners.reduce((a, b) => (b.createRevision < a.createRevision ? b : a), owners[0]!);
  if (first.key !== mine) throw new Error(`etcd mutex ${pfx}: busy, but nobody else holds it`);
  await c.client.txn([], [{ deleteRange: { key: mine } }], []);
}

export async function etcdSuite(ctx: BenchContext): Promise<void> {
  const suite = 'etcd';
  const why = clusterUnavailable();
  if (why !== null) throw new SkipError(why);
  const timing = pick(ctx, {
    full: { repeats: 3, warmupMs: 1000, durationMs: 3000 },
    quick: { repeats: 1, warmupMs: 300, durationMs: 1000 },
    smoke: { repeats: 1, warmupMs: 0, durationMs: 50 },
  });
  const budget = pick(ctx, {
    full: { warmup: 30, samples: 400, timeMs: 8000 },
    quick: { warmup: 10, samples: 100, timeMs: 2000 },
    smoke: { warmup: 0, samples: 2, timeMs: 500 },
  });
  const cluster = await EtcdCluster.start();
  const opened: Locks[] = [];
  const lockClients: EtcdClient[] = [];
  const prefix = `bench-${randomBytes(4).toString('hex')}/`;
  const open = async (owner: string): Promise<Locks> => {
    const locks = await openLocks(cluster.url, { owner, storeOptions: { prefix } });
    opened.push(locks);
    return locks;
  };
  try {
    ctx.rec.meta['etcd'] = `3-member cluster, etcd ${cluster.members.length} members on 127.0.0.1, data in ${cluster.dir}`;
    const locks = await open('bench');
    const mine = await Promise.all(Array.from({ length: 16 }, async () => {
      const c = await lockClient(cluster);
      lockClients.push(c.client);
      return c;
    }));
    for (const callers of [1, 16]) {
      await compare(ctx, suite, `${callers} caller${callers === 1 ? '' : 's'}, own keys`, [
        { name: HOLDFAST, op: async (w) => (await locks.acquire(`pairs/c${w}`)).release() },
        { name: 'etcd-lock', op: async (w) => (await lockServiceLock(mine[w]!, `${prefix}lock/c${w}`))() },
        { name: 'etcd-mutex', op: (w) => mutexPair(mine[w]!, `${prefix}mutex/c${w}`) },
      ], { ...timing, concurrency: callers, latency: true });
    }

    const subjects: HandoffSubject[] = [
      holdfastHandoffSubject(open),
      {
        name: 'etcd-lock',
        open: async () => {
          const c = await lockClient(cluster);
          return { lock: (key) => lockServiceLock(c, `${prefix}${key}`), close: async () => c.client.close() };
        },
        queued: async (key) => {
          const held = await mine[0]!.client.range(`${prefix}${key}/`, prefixEnd(`${prefix}${key}/`));
          return held.length - 1;
        },
      },
    ];
    for (const waiters of pick(ctx, { full: [1, 20], quick: [1, 20], smoke: [1] })) {
      const caseName = `hand-off, ${waiters} waiter${waiters === 1 ? '' : 's'}`;
      for (const subject of subjects) {
        await ctx.rec.guard(suite, `${caseName} / ${subject.name}`, ctx.log, async () => {
          const samples = await measureHandoff(subject, waiters, budget);
          ctx.rec.latency({ suite, case: caseName, subject: subject.name }, samples);
          ctx.log(`  ${caseName} / ${subject.name}: ${samples.length} hand-offs, p99 ${summarize(samples).p99.toFixed(2)} ms`);
        });
      }
    }
  } finally {
    await Promise.allSettled(opened.map((l) => l.close()));
    for (const c of lockClients) c.close();
    await cluster.destroy();
  }
}

/** The targets for the etcd store (#16), checked against this run's rows. */
export function etcdTargets(rows: ReadonlyArray<{ suite: string; case: string; subject: string; metric: string; value: number; n?: number }>): string[] {
  const find = (caseName: string, subject: string, metric: string) => rows.find((r) => r.suite === 'etcd' && r.case === caseName && r.subject === subject && r.metric === metric);
  const out: string[] = [];
  for (const caseName of [...new Set(rows.filter((r) => r.suite === 'etcd' && r.metric === 'pairs/s').map((r) => r.case))]) {
    const h = find(caseName, HOLDFAST, 'pairs/s');
    const e = find(caseName, 'etcd-lock', 'pairs/s');
    if (!h || !e) continue;
    const ratio = h.value / e.value;
    out.push(`- etcd pairs/s, ${caseName}: holdfast/etcd-lock = ${ratio.toFixed(2)}× (target ≥ 0.80×): ${ratio >= 0.8 ? 'met' : 'MISSED'}`);
  }
  for (const caseName of [...new Set(rows.filter((r) => r.suite === 'etcd' && r.case.startsWith('hand-off')).map((r) => r.case))]) {
    const p99 = find(caseName, HOLDFAST, 'p99');
    if (!p99) continue;
    out.push(`- etcd ${caseName} p99: ${p99.value.toFixed(2)} ms over ${p99.n ?? 0} hand-offs (target ≤ 10 ms): ${p99.value <= 10 ? 'met' : 'MISSED'}`);
  }
  return out;
}
