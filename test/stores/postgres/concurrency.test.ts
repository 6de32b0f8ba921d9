import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { resourcesConflict } from '../../../src/model/conflict.js';
import type { RequestInput } from '../../../src/model/request.js';
import type { Resource } from '../../../src/model/types.js';
import type { PostgresStore } from '../../../src/stores/postgres/store.js';
import { MIGRATIONS } from '../../../src/stores/postgres/migrations.generated.js';
import { createPostgresStore } from '../../../src/stores/postgres/store.js';
import { acquireWaiting, admin, dropSchema, freshSchema, openStore, POSTGRES_URL, request, sleep } from './helpers.js';
import { startPgBouncer } from './pgbouncer.js';

describe('postgres store: concurrency', () => {
  const schemas: string[] = [];
  after(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  test('processes that migrate the same new schema at once apply each migration once', async () => {
    const schema = freshSchema();
    schemas.push(schema);
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore(schema, { listen: false, poolSize: 2 })));
    try {
      const rows = await admin<{ version: number }>(`SELECT version FROM ${schema}.migrations ORDER BY version`);
      assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
      const outs = await Promise.all(stores.map((s) => s.acquire(request({ owner: 'm', resources: ['mig/k'] }), { waitMs: 0, waiterTtlMs: 5000 })));
      assert.equal(outs.filter((o) => o.status === 'granted').length, 1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('fences strictly increase across close() and reopen', async () => {
    const schema = freshSchema();
    schemas.push(schema);
    let last = 0;
    for (let round = 0; round < 3; round++) {
      const store = await openStore(schema, { listen: false });
      for (let i = 0; i < 3; i++) {
        const req = request({ owner: 'f', resources: ['fence/k'] });
        const out = await store.acquire(req, { waitMs: 0, waiterTtlMs: 5000 });
        assert.equal(out.status, 'granted');
        if (out.status !== 'granted') return;
        assert.ok(out.lease.fence > last, `fence ${out.lease.fence} after ${last}`);
        last = out.lease.fence;
        await store.release(req.id);
      }
      await store.close();
    }
  });

  /** 50 contenders on 3 store objects (8 pooled connections each), 6 rounds each, random shapes. */
  const contend = async (open: (schema: string) => Promise<PostgresStore>): Promise<void> => {
    const schema = freshSchema();
    schemas.push(schema);
    const stores: PostgresStore[] = [];
    for (let i = 0; i < 3; i++) stores.push(await open(schema));
    const shapes: RequestInput['resources'][] = [
      ['ham/a'], ['ham/b'], ['ham'], ['ham/a/x'], [{ key: 'ham/a', mode: 'shared' }], [{ key: 'ham', mode: 'shared' }],
      [{ key: 'ham/b', mode: 'shared', limit: 2 }], ['ham/b', 'hom/c'], ['hom/c'], ['hom/c', 'ham/a/y'],
    ];
    const holding = new Map<string, Resource[]>();
    const lastFence = new Map<string, number>();
    let grants = 0;
    let violations = 0;
    const contender = async (n: number): Promise<void> => {
      const store = stores[n % stores.length]!;
      for (let round = 0; round < 6; round++) {
        const req = request({ owner: `c${n}`, resources: shapes[randomInt(shapes.length)], ttlMs: 20_000 });
        const lease = await acquireWaiting(store, req, 20_000, 1000);
        assert.ok(lease, `contender ${n} timed out`);
        for (const [id, resources] of holding) {
          if (resources.some((h) => lease.resources.some((r) => resourcesConflict(h, r) && !(h.mode === 'shared' && r.mode === 'shared')))) {
            violations += 1;
            assert.fail(`lease ${lease.id} of c${n} conflicts with ${id}`);
          }
        }
        const sharedLimited = lease.resources.filter((r) => r.limit !== null);
        for (const r of sharedLimited) {
          const count = [...holding.values()].filter((rs) => rs.some((h) => h.key === r.key)).length;
          assert.ok(count < r.limit!, `limit of ${r.key} exceeded`);
        }
        for (const r of lease.resources) {
          // Every earlier holder of the key ended before an exclusive grant: its fence is higher.
          const previous = lastFence.get(r.key) ?? 0;
          if (r.mode === 'exclusive') assert.ok(lease.fence > previous, `fence of ${r.key} went back`);
          lastFence.set(r.key, Math.max(previous, lease.fence));
        }
        holding.set(lease.id, lease.resources);
        grants += 1;
        await sleep(randomInt(4));
        holding.delete(lease.id);
        assert.equal(await store.release(lease.id), true);
      }
    };
    try {
      await Promise.all(Array.from({ length: 50 }, (_, n) => contender(n)));
      assert.equal(violations, 0);
      assert.equal(grants, 300);
      // The history agrees: replayed in order, no key is ever held in conflict.
      const events = await stores[0]!.history({ limit: 10_000 });
      const live = new Map<number, Resource[]>();
      for (const event of events.reverse()) {
        if (event.type === 'acquired') {
          for (const resources of live.values()) {
            assert.ok(!resources.some((h) => event.resources.some((r) => resourcesConflict(h, r))), `history: fence ${event.fence} conflicts`);
          }
          live.set(event.fence, event.resources);
        } else {
          live.delete(event.fence);
        }
      }
      assert.equal(live.size, 0);
      const table = await stores[1]!.list();
      assert.deepEqual(table, { locks: [], waiters: [] });
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  };

  test('50 concurrent contenders over many connections never hold conflicting locks', async () => {
    await contend((schema) => openStore(schema, { poolSize: 8 }));
  });

  test('the same through PgBouncer in transaction pooling mode: 24 client connections share 2 server connections', async () => {
    // Every call may run on another server connection than the last one of the same client, and
    // each server connection serves many clients: nothing may depend on session state. Only the
    // LISTEN connection goes to the server directly (listenUrl).
    const proxy = await startPgBouncer(POSTGRES_URL, { poolSize: 2 });
    try {
      await contend(async (schema) => {
        const store = createPostgresStore(proxy.url, { schema, poolSize: 8, listenUrl: POSTGRES_URL });
        await store.ready();
        return store;
      });
    } finally {
      await proxy.stop();
    }
  });
});
