import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { InvalidRequestError, StoreUnavailableError } from '../../../src/model/errors.js';
import { MIGRATIONS } from '../../../src/stores/postgres/migrations.generated.js';
import { createPostgresStore, migrationScript } from '../../../src/stores/postgres/store.js';
import type { StoreChange } from '../../../src/stores/store.js';
import { admin, dropSchema, freshSchema, openStore, POSTGRES_URL, request, sleep, suiteStore } from './helpers.js';

const wait = { waitMs: 5000, waiterTtlMs: 5000 };
const once = { waitMs: 0, waiterTtlMs: 5000 };

describe('postgres store: lease operations', () => {
  const suite = suiteStore();

  test('acquire, get, renew, release', async () => {
    const changes: StoreChange[] = [];
    const unwatch = suite.store.watch((c) => changes.push(c));
    const req = request({ owner: 'alice', resources: ['basic/a'], metadata: { message: 'hi' } });
    const out = await suite.store.acquire(req, once);
    assert.equal(out.status, 'granted');
    if (out.status !== 'granted') return;
    assert.equal(out.lease.id, req.id);
    assert.equal(out.lease.owner, 'alice');
    assert.deepEqual(out.lease.resources, [{ key: 'basic/a', mode: 'exclusive', limit: null }]);
    assert.equal(out.lease.expiresAt - out.lease.acquiredAt, 60_000);
    assert.equal(out.lease.acquiredAt, out.now);
    assert.deepEqual(out.lease.metadata, { message: 'hi' });
    assert.ok(out.lease.fence > 0);
    assert.deepEqual(await suite.store.get(req.id), out.lease);

    const renewed = await suite.store.renew(req.id, 120_000);
    assert.equal(renewed.status, 'renewed');
    if (renewed.status === 'renewed') {
      assert.equal(renewed.lease.expiresAt, renewed.now + 120_000);
      assert.equal(renewed.lease.fence, out.lease.fence);
    }
    assert.equal(await suite.store.release(req.id), true);
    assert.equal(await suite.store.release(req.id), false);
    assert.equal(await suite.store.get(req.id), null);
    assert.equal((await suite.store.renew(req.id, 1000)).status, 'lost');
    assert.equal((await suite.store.renew('nosuchleaseid-000000', 1000)).status, 'unknown');
    unwatch();
    assert.deepEqual(changes.map((c) => c.type), ['acquired', 'released']);
    assert.deepEqual(changes[0]!.granted, [req.id]);

    const events = await suite.store.history({ key: 'basic/a' });
    assert.deepEqual(events.map((e) => [e.type, e.reason, e.by]), [['released', 'release', 'alice'], ['acquired', null, null]]);
    assert.match(events[0]!.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  test('busy carries holders and retryAfterMs; queued, poll, cancel', async () => {
    const a = request({ owner: 'alice', resources: ['busy/x'], ttlMs: 30_000, metadata: { message: 'backup' } });
    assert.equal((await suite.store.acquire(a, once)).status, 'granted');
    const b = request({ owner: 'bob', resources: ['busy/x'] });
    const busy = await suite.store.acquire(b, once);
    assert.equal(busy.status, 'busy');
    if (busy.status !== 'busy') return;
    assert.equal(busy.holders.length, 1);
    assert.equal(busy.holders[0]!.owner, 'alice');
    assert.equal(busy.holders[0]!.state, 'held');
    assert.deepEqual(busy.holders[0]!.metadata, { message: 'backup' });
    assert.ok(busy.retryAfterMs > 29_000 && busy.retryAfterMs <= 30_000);

    const queued = await suite.store.acquire(b, wait);
    assert.equal(queued.status, 'queued');
    if (queued.status !== 'queued') return;
    assert.equal(queued.ticket, b.id);
    const polled = await suite.store.poll(b.id);
    assert.equal(polled.status, 'queued');
    assert.ok(!('ticket' in polled));
    const table = await suite.store.list({ prefix: 'busy/' });
    assert.equal(table.locks.length, 1);
    assert.deepEqual(table.waiters.map((w) => [w.key, w.owner, w.position]), [['busy/x', 'bob', 1]]);
    assert.equal(await suite.store.cancel(b.id), false);
    assert.equal((await suite.store.poll(b.id)).status, 'gone');
    assert.equal((await suite.store.list({ prefix: 'busy/' })).waiters.length, 0);

    // A ticket granted meanwhile is released by cancel.
    const c = request({ owner: 'carol', resources: ['busy/x'] });
    assert.equal((await suite.store.acquire(c, wait)).status, 'queued');
    assert.equal(await suite.store.release(a.id), true);
    const granted = await suite.store.poll(c.id);
    assert.equal(granted.status, 'granted');
    assert.equal(await suite.store.cancel(c.id), true);
    assert.equal(await suite.store.get(c.id), null);
    const last = (await suite.store.history({ owner: 'carol' }))[0]!;
    assert.equal(last.reason, 'cancelled');
  });

  test('requestId makes acquire idempotent for a live lease and a queued ticket', async () => {
    const first = request({ owner: 'idem', resources: ['idem/k'], requestId: 'r-1' });
    const out1 = await suite.store.acquire(first, once);
    assert.equal(out1.status, 'granted');
    const again = await suite.store.acquire(request({ owner: 'idem', resources: ['idem/k'], requestId: 'r-1' }), once);
    assert.equal(again.status, 'granted');
    if (out1.status === 'granted' && again.status === 'granted') assert.equal(again.lease.id, out1.lease.id);
    // Another owner with the same requestId is a different request.
    assert.equal((await suite.store.acquire(request({ owner: 'other', resources: ['idem/k'], requestId: 'r-1' }), once)).status, 'busy');

    const q1 = await suite.store.acquire(request({ owner: 'idem', resources: ['idem/k'], requestId: 'r-2' }), wait);
    assert.equal(q1.status, 'queued');
    const q2 = await suite.store.acquire(request({ owner: 'idem', resources: ['idem/k'], requestId: 'r-2' }), wait);
    assert.equal(q2.status, 'queued');
    if (q1.status === 'queued' && q2.status === 'queued') assert.equal(q2.ticket, q1.ticket);
    assert.equal((await suite.store.list({ prefix: 'idem/' })).waiters.length, 1);
    assert.equal(await suite.store.release(first.id), true);
    const q3 = await suite.store.acquire(request({ owner: 'idem', resources: ['idem/k'], requestId: 'r-2' }), wait);
    assert.equal(q3.status, 'granted');
    if (q1.status === 'queued' && q3.status === 'granted') assert.equal(q3.lease.id, q1.ticket);
  });

  test('a used lease id is rejected; bad input is INVALID_REQUEST naming the field', async () => {
    const req = request({ owner: 'ids', resources: ['ids/a'] });
    assert.equal((await suite.store.acquire(req, once)).status, 'granted');
    await suite.store.release(req.id);
    await assert.rejects(suite.store.acquire(req, once), (e: unknown) => e instanceof InvalidRequestError && e.field === 'id');
    const bad = { ...request({ owner: 'ids', resources: ['ids/b'] }), resources: [{ key: 'ids/b', mode: 'weird', limit: null }] };
    await assert.rejects(
      suite.store.acquire(bad as never, once),
      (e: unknown) => e instanceof InvalidRequestError && e.field === 'resources[0].mode',
    );
  });

  test('releaseOwner (with and without key) and forceRelease are recorded with who did them', async () => {
    const a = request({ owner: 'task-1', resources: ['own/a'] });
    const b = request({ owner: 'task-1', resources: ['own/b', 'else/b'] });
    const c = request({ owner: 'task-1', resources: ['own/c'] });
    for (const r of [a, b, c]) assert.equal((await suite.store.acquire(r, once)).status, 'granted');
    assert.equal(await suite.store.releaseOwner('task-1', { key: 'own/a', by: 'admin' }), 1);
    assert.equal(await suite.store.get(a.id), null);
    assert.equal(await suite.store.releaseOwner('task-1', { by: 'cleanup' }), 2);
    assert.equal(await suite.store.releaseOwner('task-1', { by: 'cleanup' }), 0);
    const events = await suite.store.history({ owner: 'task-1', limit: 3 });
    assert.deepEqual(events.map((e) => [e.type, e.reason, e.by]), [
      ['released', 'release-owner', 'cleanup'], ['released', 'release-owner', 'cleanup'], ['released', 'release-owner', 'admin'],
    ]);
    const d = request({ owner: 'x', resources: [{ key: 'force/k', mode: 'shared' }] });
    const e = request({ owner: 'y', resources: [{ key: 'force/k', mode: 'shared' }] });
    for (const r of [d, e]) assert.equal((await suite.store.acquire(r, once)).status, 'granted');
    assert.equal(await suite.store.forceRelease('force/k', { by: 'root' }), 2);
    assert.equal((await suite.store.renew(d.id, 1000)).status, 'lost');
    const forced = await suite.store.history({ key: 'force/k', limit: 1 });
    assert.deepEqual([forced[0]!.type, forced[0]!.reason, forced[0]!.by], ['forced', 'force', 'root']);
    const paged = await suite.store.history({ key: 'force/k', beforeId: forced[0]!.id });
    assert.ok(paged.every((ev) => ev.id < forced[0]!.id));
  });

  test('sweep ends expired leases and returns the next due time', async () => {
    const req = request({ owner: 'sweep', resources: ['sweep/a'], ttlMs: 150 });
    const out = await suite.store.acquire(req, once);
    assert.equal(out.status, 'granted');
    const due = await suite.store.sweep();
    assert.ok(due !== null);
    await sleep(250);
    await suite.store.sweep();
    const events = await suite.store.history({ owner: 'sweep', limit: 1 });
    assert.equal(events[0]!.type, 'expired');
    if (out.status === 'granted') assert.equal(Date.parse(events[0]!.at), out.lease.expiresAt);
  });
});

describe('postgres store: options and failures', () => {
  test('options are validated, naming the field', () => {
    assert.throws(() => createPostgresStore('postgres://x/y', { poolSize: 0 }), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.poolSize');
    assert.throws(() => createPostgresStore('postgres://x/y', { schema: '' }), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.schema');
    assert.throws(() => createPostgresStore('postgres://x/y', { bogus: 1 } as never), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.bogus');
    for (const name of ['', 'é', 'x'.repeat(51), 7]) {
      assert.throws(() => createPostgresStore('postgres://x/y', { applicationName: name as string }), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.applicationName');
    }
    assert.throws(() => createPostgresStore('mysql://x/y'), (e: unknown) => e instanceof InvalidRequestError && e.field === 'url');
    for (const batchSize of [0, 65, 1.5]) {
      assert.throws(() => createPostgresStore('postgres://x/y', { batchSize }), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.batchSize');
    }
    assert.throws(() => createPostgresStore('postgres://x/y', { batchLanes: 0 }), (e: unknown) => e instanceof InvalidRequestError && e.field === 'options.batchLanes');
    assert.throws(() => createPostgresStore('postgres://x/y', { poolSize: 2, batchLanes: 3 }), /at most poolSize \(2\), got 3/);
  });

  test('an unreachable database is STORE_UNAVAILABLE with the cause kept', async () => {
    const store = createPostgresStore('postgres://postgres@127.0.0.1:1/test', { listen: false, connectTimeoutMs: 1000 });
    try {
      await assert.rejects(store.acquire(request({ owner: 'o', resources: ['k'] }), once), (e: unknown) => {
        assert.ok(e instanceof StoreUnavailableError);
        assert.ok(e.cause !== undefined);
        assert.doesNotMatch(e.message, /\b[0-9A-Z]{5}\b.*SQLSTATE/);
        return true;
      });
    } finally {
      await store.close();
    }
  });

  test('a quoted schema name works, and migrate: false checks the version', async () => {
    const schema = `hf test "${freshSchema()}"`;
    const store = await openStore(schema);
    try {
      assert.equal((await store.acquire(request({ owner: 'o', resources: ['q/k'] }), once)).status, 'granted');
      const checked = await openStore(schema, { migrate: false, listen: false });
      assert.equal((await checked.list()).locks.length, 1);
      await checked.close();
      const missing = createPostgresStore('postgres://postgres@127.0.0.1:5432/test', { schema: freshSchema(), migrate: false, listen: false });
      await assert.rejects(missing.list(), StoreUnavailableError);
      await missing.close();
    } finally {
      await store.close();
      await dropSchema(schema);
    }
  });

  test('the schema is one baseline migration and later files; a schema of a development build before it is refused', async () => {
    assert.equal(MIGRATIONS[0]!.name, 'baseline');
    const sql = MIGRATIONS.map((m) => m.sql).join('\n');
    // The baseline defines each function once, in its final form. A later file may fix one by
    // replacing it whole (CREATE OR REPLACE, same signature), never drop or alter one.
    assert.doesNotMatch(MIGRATIONS[0]!.sql, /CREATE OR REPLACE/);
    assert.doesNotMatch(sql, /ALTER FUNCTION|DROP FUNCTION/);
    // Name and argument list: hf_sweep has two signatures (with and without a history limit).
    const names = [...sql.matchAll(/^CREATE FUNCTION (\w+\([^)]*\))/gm)].map((m) => m[1]!);
    assert.ok(names.length > 40);
    assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), []);
    const replaced = [...sql.matchAll(/^CREATE OR REPLACE FUNCTION (\w+\([^)]*\))/gm)].map((m) => m[1]!);
    for (const name of replaced) assert.ok(names.includes(name), `${name} is replaced by a later file, so an earlier one created it`);
    const schema = freshSchema();
    const q = pg.escapeIdentifier(schema);
    try {
      await (await openStore(schema, { listen: false })).close();
      assert.doesNotMatch(migrationScript(schema, MIGRATIONS.length), /-- migration \d+:/, 'nothing more to apply');
      // What migrations 1-12 of the development history recorded.
      await admin(`UPDATE ${q}.migrations SET name = 'tables', checksum = '0123456789abcdef' WHERE version = 1;
        DELETE FROM ${q}.migrations WHERE version > 1;
        INSERT INTO ${q}.migrations (version, name, checksum) SELECT v, 'old', 'old' FROM generate_series(2, 12) v`);
      for (const migrate of [true, false]) {
        const old = createPostgresStore(POSTGRES_URL, { schema, migrate, listen: false });
        await assert.rejects(old.list(), /made by a development build of holdfast .*"tables".*no upgrade path/);
        await old.close();
      }
    } finally {
      await dropSchema(schema);
    }
  });

  test('migrationScript applies the same schema by hand', async () => {
    const schema = freshSchema();
    try {
      await admin(`BEGIN; ${migrationScript(schema)} COMMIT;`.replace(/^/, ''));
      const store = await openStore(schema, { migrate: false });
      assert.equal((await store.acquire(request({ owner: 'o', resources: ['m/k'] }), once)).status, 'granted');
      await store.close();
    } finally {
      await dropSchema(schema);
    }
  });
});
