/**
 * A grant is dated when it is made (baseline part 12). An operation reads the store's clock once, after
 * its first locks; if it then waits (here: for a row lock) while another transaction ends a lease
 * under another root, and then takes that root's lock and grants what that lease freed, the grant
 * must not be dated before that lease's end: the store's own history would show two conflicting
 * leases live at once (SPEC 3.1, by the store's clock), as the fault harness once found.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { POSTGRES_URL, request, sleep, suiteStore } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

describe('postgres store: grant time', () => {
  const suite = suiteStore();
  const { schema } = suite;

  test('a waiter granted by an operation that waited meanwhile is dated after the other lease it needed ended', async () => {
    const first = await suite.store.acquire(request({ owner: 'first', resources: ['gt-a/x'] }), once);
    const second = await suite.store.acquire(request({ owner: 'second', resources: ['gt-b/y'] }), once);
    assert.equal(first.status, 'granted');
    assert.equal(second.status, 'granted');
    // Wants both keys, under two roots.
    const waiter = request({ owner: 'waiter', resources: ['gt-a/x', 'gt-b/y'] });
    const queued = await suite.store.acquire(waiter, { waitMs: 30_000, waiterTtlMs: 30_000 });
    assert.equal(queued.status, 'queued');

    // Another session locks the second lease's row. A forced release of its key takes the root
    // gt-b, reads the clock, and waits for that row.
    const blocker = new pg.Client({ connectionString: POSTGRES_URL });
    await blocker.connect();
    let forcing: Promise<number> | undefined;
    try {
      await blocker.query('BEGIN');
      await blocker.query(`UPDATE ${pg.escapeIdentifier(schema)}.leases SET ttl_ms = ttl_ms WHERE id = $1`, [second.lease.id]);
      forcing = suite.store.forceRelease('gt-b/y', { by: 'admin' });
      await sleep(300);
      // Meanwhile the first lease ends; the waiter can't be granted yet (gt-b is locked, its
      // second key still held), so this release leaves it to the forced release.
      assert.equal(await suite.store.release(first.lease.id), true);
      await sleep(50);
    } finally {
      await blocker.query('COMMIT');
      await blocker.end();
    }
    assert.equal(await forcing, 1);

    const polled = await suite.store.poll(waiter.id);
    assert.equal(polled.status, 'granted');
    const events = await suite.store.history({ limit: 10 });
    const ended = events.find((e) => e.type === 'released' && e.owner === 'first');
    const granted = events.find((e) => e.type === 'acquired' && e.owner === 'waiter');
    assert.ok(ended && granted, JSON.stringify(events));
    assert.ok(Date.parse(granted.at) >= Date.parse(ended.at),
      `the waiter's lease is dated ${granted.at}, before the lease it needed ended (${ended.at})`);
    if (polled.status === 'granted') {
      assert.ok(polled.lease.acquiredAt >= Date.parse(ended.at), 'its acquiredAt too');
      assert.equal(polled.lease.expiresAt - polled.lease.acquiredAt, waiter.ttlMs);
    }
  });
});
