/**
 * The dashboard's logic that needs no DOM, run in node on the page's own modules (web/ui/*.js):
 * the key tree (natural order, subtree counts, filtering, collapsing), the "stuck?" hint from
 * past lease durations, and the wait-time quantiles from Prometheus histogram text.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

interface Entry { key: string; owner: string; mode: string; limit: number | null; fence?: number; position?: number; metadata: Record<string, unknown> }
interface TreeNode { name: string; path: string; held: number; waiting: number; keys: number; holders: Entry[]; waiters: Entry[]; children: Map<string, TreeNode> }
interface Row { kind: 'node' | 'holder' | 'waiter'; node: TreeNode }
interface TreeModule {
  buildTree(table: { locks: Entry[]; waiters: Entry[] }, query: string): TreeNode;
  flatten(root: TreeNode, collapsed: Set<string>): Row[];
  branchPaths(root: TreeNode): string[];
}
interface Usual { medianMs: number; samples: number; of: string }
interface StuckModule {
  shapeOf(key: string): string;
  UsualDurations: new () => { learn(events: unknown[]): void; usual(key: string): Usual | null; stuck(key: string, heldMs: number): Usual | null };
}
interface ChartsModule {
  waitBuckets(text: string): [number, number][] | null;
  quantile(q: number, buckets: [number, number][]): number;
}

const load = async <T>(name: string): Promise<T> => (await import(new URL(`../../../web/ui/${name}`, import.meta.url).href)) as T;

const lock = (key: string, owner: string, fence: number, message = ''): Entry => ({ key, owner, fence, mode: 'exclusive', limit: null, metadata: message ? { message } : {} });

describe('the dashboard page logic', () => {
  test('the key tree: natural order, counts per subtree, filtering by key, owner or message, collapsing', async () => {
    const { buildTree, flatten, branchPaths } = await load<TreeModule>('tree.js');
    const table = {
      locks: [lock('tenants/t10/db', 'a', 1), lock('tenants/t2/db', 'b', 2, 'Nightly backup'), lock('tenants/t1/db', 'c', 3), lock('apps/42', 'd', 4)],
      waiters: [{ key: 'tenants/t2/db', owner: 'w2', mode: 'exclusive', limit: null, position: 2, metadata: {} }, { key: 'tenants/t2/db', owner: 'w1', mode: 'exclusive', limit: null, position: 1, metadata: {} }],
    };
    const root = buildTree(table, '');
    const tenants = root.children.get('tenants')!;
    assert.deepEqual([tenants.held, tenants.waiting, tenants.keys], [3, 2, 3]);
    const rows = flatten(root, new Set());
    assert.deepEqual(rows.map((r) => `${r.kind}:${r.node.path}`), [
      'node:apps', 'node:apps/42', 'node:tenants', 'node:tenants/t1', 'node:tenants/t1/db', 'node:tenants/t2', 'node:tenants/t2/db',
      'waiter:tenants/t2/db', 'waiter:tenants/t2/db', 'node:tenants/t10', 'node:tenants/t10/db',
    ]);
    assert.deepEqual(tenants.children.get('t2')!.children.get('db')!.waiters.map((w) => w.owner), ['w1', 'w2'], 'the queue in order');
    assert.deepEqual(flatten(root, new Set(['tenants'])).map((r) => r.node.path), ['apps', 'apps/42', 'tenants']);
    assert.ok(branchPaths(root).includes('tenants/t2/db'), 'a key with waiters can be collapsed');
    assert.equal(buildTree(table, 'NIGHTLY').held, 1, 'message, case-insensitive');
    assert.equal(buildTree(table, 'w1').waiting, 1, 'owner of a waiter');
    assert.equal(buildTree(table, 't1/').held, 1, 'key');
  });

  test('stuck?: far past the median of the key, or of keys of the same shape', async () => {
    const { UsualDurations, shapeOf } = await load<StuckModule>('stuck.js');
    assert.equal(shapeOf('tenants/t10/backup-3'), 'tenants/t#/backup-#');
    const events: unknown[] = [];
    let fence = 0;
    const at = (ms: number) => new Date(1_800_000_000_000 + ms).toISOString();
    for (const [key, ms] of [['jobs/nightly', 10_000], ['jobs/nightly', 12_000], ['jobs/nightly', 14_000], ['tenants/t1/backup', 20_000], ['tenants/t2/backup', 20_000], ['tenants/t3/backup', 40_000]] as const) {
      fence++;
      const resources = [{ key, mode: 'exclusive', limit: null }];
      events.push({ id: fence * 2, type: 'released', fence, at: at(fence * 100_000 + ms), resources });
      events.push({ id: fence * 2 - 1, type: 'acquired', fence, at: at(fence * 100_000), resources });
    }
    events.push({ id: 99, type: 'acquired', fence: 50, at: at(0), resources: [{ key: 'jobs/nightly', mode: 'exclusive', limit: null }] });
    const usual = new UsualDurations();
    usual.learn(events);
    assert.deepEqual(usual.usual('jobs/nightly'), { medianMs: 12_000, samples: 3, of: 'this key' });
    assert.equal(usual.stuck('jobs/nightly', 40_000), null, 'under 4 × the median');
    assert.ok(usual.stuck('jobs/nightly', 50_000));
    assert.deepEqual(usual.stuck('tenants/t10/backup', 200_000), { medianMs: 20_000, samples: 3, of: 'keys like tenants/t#/backup' });
    assert.equal(usual.usual('other/key'), null, 'too few samples: no hint');
  });

  test('wait time quantiles from the Prometheus histogram of granted waits', async () => {
    const { waitBuckets, quantile } = await load<ChartsModule>('charts.js');
    const text = [
      '# TYPE holdfast_wait_seconds histogram',
      'holdfast_wait_seconds_bucket{le="0.1",outcome="granted"} 50',
      'holdfast_wait_seconds_bucket{le="1",outcome="granted"} 90',
      'holdfast_wait_seconds_bucket{le="5",outcome="granted"} 100',
      'holdfast_wait_seconds_bucket{le="+Inf",outcome="granted"} 100',
      'holdfast_wait_seconds_bucket{le="0.1",outcome="timeout"} 7',
    ].join('\n');
    const buckets = waitBuckets(text)!;
    assert.deepEqual(buckets, [[0.1, 50], [1, 90], [5, 100], [Infinity, 100]]);
    assert.equal(quantile(0.5, buckets), 0.1);
    assert.ok(Math.abs(quantile(0.99, buckets) - 4.6) < 1e-9);
    assert.ok(Number.isNaN(quantile(0.5, [[Infinity, 0]])), 'no waits: no value');
    assert.equal(waitBuckets('holdfast_leases_held 3'), null);
  });
});
