/**
 * One row per lease (migration 6): a live lease is its `leases` row, an ended one its `history`
 * row, which records its grant and its end. A grant writes no history row; the history still
 * lists both events of every lease, with the ids they had, also across the upgrade of a schema
 * made by migration 5 (where a grant was a history row of its own).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { migrationScript } from '../../../src/stores/postgres/migrate.js';
import type { HistoryEvent } from '../../../src/model/types.js';
import { admin, dropSchema, freshSchema, openStore, POSTGRES_URL, request, sleep } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

/** Migrations 1-5 only, applied to `schema`: a schema as the build before migration 6 made it. */
async function schemaBeforeOneRow(schema: string): Promise<void> {
  const script = migrationScript(schema);
  await admin(`BEGIN; ${script.slice(0, script.indexOf('-- migration 6:'))} COMMIT;`);
}

/** hf_acquire's request argument (a quoted literal) for one exclusive key. */
const requestLiteral = (id: string, owner: string, key: string): string =>
  pg.escapeLiteral(JSON.stringify({ id, owner, resources: [{ key, mode: 'exclusive', limit: null }], ttlMs: 600_000, metadata: {}, lockDelayMs: 0 }));

const shape = (events: HistoryEvent[]): Array<[number, string, string, number]> =>
  events.map((e) => [e.id, e.type, e.owner, e.fence]);

describe('postgres store: one row per lease', () => {
  const schemas: string[] = [];
  const schemaFor = (): string => {
    const schema = freshSchema();
    schemas.push(schema);
    return schema;
  };
  after(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  test('a grant writes no history row; the ended lease is one row with both events', async () => {
    const schema = schemaFor();
    const q = pg.escapeIdentifier(schema);
    const store = await openStore(schema, { autoSweep: false });
    try {
      const r = request({ owner: 'one', resources: ['row/a'] });
      assert.equal((await store.acquire(r, once)).status, 'granted');
      assert.deepEqual(await admin(`SELECT count(*)::int AS n FROM ${q}.history`), [{ n: 0 }]);
      const [granted] = await store.history({ owner: 'one' });
      assert.equal(granted!.type, 'acquired');
      assert.equal(await store.release(r.id), true);
      const rows = await admin<{ id: string; acquired_id: string; type: string }>(`SELECT id, acquired_id, type FROM ${q}.history`);
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0]!.acquired_id), granted!.id, 'the end row keeps the grant event id');
      const events = await store.history({ owner: 'one' });
      assert.deepEqual(events.map((e) => e.type), ['released', 'acquired']);
      assert.equal(events[1]!.id, granted!.id);
      assert.ok(events[0]!.id > granted!.id);
      assert.deepEqual(await admin(`SELECT count(*)::int AS n FROM ${q}.leases`), [{ n: 0 }]);
    } finally {
      await store.close();
    }
  });

  test('history pages merge live grants, ended grants and ends in id order', async () => {
    const schema = schemaFor();
    const store = await openStore(schema, { autoSweep: false });
    try {
      // a: granted then b granted, a released, c granted, b released; c stays live.
      const [a, b, c] = ['a', 'b', 'c'].map((k) => request({ owner: 'merge', resources: [`merge/${k}`] }));
      for (const step of [() => store.acquire(a!, once), () => store.acquire(b!, once), () => store.release(a!.id),
        () => store.acquire(c!, once), () => store.release(b!.id)]) await step();
      const all = await store.history({ owner: 'merge' });
      assert.deepEqual(all.map((e) => `${e.type} ${e.resources[0]!.key}`),
        ['released merge/b', 'acquired merge/c', 'released merge/a', 'acquired merge/b', 'acquired merge/a']);
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.id > all[i]!.id);
      // Paging by beforeId, two at a time, gives the same events; a key filter reaches all sources.
      const paged: HistoryEvent[] = [];
      for (let before: number | undefined; ;) {
        const page = await store.history({ owner: 'merge', limit: 2, ...(before === undefined ? {} : { beforeId: before }) });
        if (page.length === 0) break;
        paged.push(...page);
        before = page[page.length - 1]!.id;
      }
      assert.deepEqual(shape(paged), shape(all));
      assert.deepEqual((await store.history({ key: 'merge/b' })).map((e) => e.type), ['released', 'acquired']);
      assert.deepEqual((await store.history({ key: 'merge/c' })).map((e) => e.type), ['acquired']);
    } finally {
      await store.close();
    }
  });

  test('a schema made by migration 5 keeps its events and their ids', async () => {
    const schema = schemaFor();
    const q = pg.escapeIdentifier(schema);
    await schemaBeforeOneRow(schema);
    const call = (sql: string): Promise<unknown> => admin(`SET search_path = ${q}, pg_catalog; ${sql}; RESET search_path`);
    // Through migration 5's own functions: live, ended, ended with its grant pruned, live with its grant pruned.
    for (const [id, key] of [['live', 'up/live'], ['ended', 'up/ended'], ['pruned-end', 'up/p1'], ['pruned-live', 'up/p2']]) {
      await call(`SELECT hf_acquire(${requestLiteral(id!, 'old', key!)}, 0, 5000, 'x')`);
    }
    await call(`SELECT hf_release('ended', 'x')`);
    await call(`SELECT hf_release('pruned-end', 'x')`);
    await admin(`DELETE FROM ${q}.history WHERE type = 'acquired' AND lease_id IN ('pruned-end', 'pruned-live')`);
    const before = await admin<{ id: string; type: string; lease_id: string }>(`SELECT id, type, lease_id FROM ${q}.history ORDER BY id`);
    assert.equal(before.length, 4);

    const store = await openStore(schema, { autoSweep: false });
    try {
      const events = await store.history({ owner: 'old' });
      const kept = before.map((row) => [Number(row.id), row.type]);
      assert.deepEqual(events.map((e) => [e.id, e.type]), kept.reverse(), 'every event kept before the upgrade is listed with its id');
      // The live lease whose grant event was pruned still has none; its end is recorded.
      assert.equal(events.find((e) => e.resources[0]!.key === 'up/p2'), undefined);
      assert.equal((await store.renew('pruned-end', 5000)).status, 'lost', 'an ended lease is still known');
      assert.equal((await store.release('live')), true);
      assert.equal((await store.release('pruned-live')), true);
      const [end2, end1] = await store.history({ owner: 'old', limit: 2 });
      assert.deepEqual([end1!.type, end1!.resources[0]!.key, end2!.type, end2!.resources[0]!.key], ['released', 'up/live', 'released', 'up/p2']);
      assert.ok(end1!.id > Number(before[before.length - 1]!.id), 'new ids follow the old ones');
      assert.deepEqual(await admin(`SELECT acquired_id, acquired_at FROM ${q}.history WHERE lease_id = 'pruned-live'`),
        [{ acquired_id: null, acquired_at: null }]);
      const liveGrant = before.find((row) => row.lease_id === 'live' && row.type === 'acquired')!;
      assert.deepEqual(await admin(`SELECT acquired_id::int AS a FROM ${q}.history WHERE lease_id = 'live'`), [{ a: Number(liveGrant.id) }]);
      await assert.rejects(admin(`INSERT INTO ${q}.history (at, type, owner, fence, resources, lease_id) VALUES (0, 'acquired', 'x', 1, '[]', 'x')`),
        /history_ends_only/);
    } finally {
      await store.close();
    }
  });

  test('an operation in flight when the upgrade starts commits first: no event id is given twice', async () => {
    const schema = schemaFor();
    const q = pg.escapeIdentifier(schema);
    await schemaBeforeOneRow(schema);
    const inFlight = new pg.Client({ connectionString: POSTGRES_URL });
    await inFlight.connect();
    try {
      await inFlight.query(`BEGIN; SET LOCAL search_path = ${q}, pg_catalog; SELECT hf_acquire(${requestLiteral('a', 'o', 'fly/a')}, 0, 5000, 'x')`);
      const opening = openStore(schema, { autoSweep: false });
      opening.catch(() => {}); // awaited below; not unhandled meanwhile
      await sleep(300); // the migration waits for the lock on leases and history
      await inFlight.query('COMMIT');
      const store = await opening;
      try {
        assert.equal((await store.acquire(request({ owner: 'o', resources: ['fly/b'] }), once)).status, 'granted');
        const ids = (await store.history({ owner: 'o' })).map((e) => e.id);
        assert.equal(ids.length, 2);
        assert.equal(new Set(ids).size, 2, `ids ${ids.join(', ')}`);
        assert.ok(ids[0]! > ids[1]!, 'the grant after the upgrade has the higher id');
      } finally {
        await store.close();
      }
    } finally {
      await inFlight.end();
    }
  });
});
