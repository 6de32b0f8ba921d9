/**
 * A lease never ends before it was granted (migration 5). A cancel reads the clock after its
 * locks, then settles: here the holder in front of the waiter has expired, so the settle ends it
 * and grants the waiter, dated when that grant is made. If the settle waited meanwhile (another
 * session holds the holder's row), that grant is later than the cancel's clock reading, and the
 * cancel, which then finds the lease it is cancelling, ended it at that earlier reading: the
 * history showed the end before the grant (the fault harness's check (a) found it).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { POSTGRES_URL, request, sleep, suiteStore } from './helpers.js';

describe('postgres store: end time', () => {
  // No sweep timer: the holder's expiry is left to the cancel's settle.
  const suite = suiteStore({ autoSweep: false });
  const { schema } = suite;

  test('a ticket granted by the settle of its own cancel is ended no earlier than its grant', async () => {
    const holder = await suite.store.acquire(request({ owner: 'holder', resources: ['et/k'], ttlMs: 300 }), { waitMs: 0, waiterTtlMs: 5000 });
    assert.equal(holder.status, 'granted');
    const waiter = request({ owner: 'waiter', resources: ['et/k'], ttlMs: 60_000 });
    const queued = await suite.store.acquire(waiter, { waitMs: 30_000, waiterTtlMs: 30_000 });
    assert.equal(queued.status, 'queued');
    await sleep(400); // the holder has expired; nothing has swept it

    // Another session holds the holder's row: the cancel reads its clock, then its settle waits.
    const blocker = new pg.Client({ connectionString: POSTGRES_URL });
    await blocker.connect();
    let cancelling: Promise<boolean> | undefined;
    try {
      await blocker.query('BEGIN');
      await blocker.query(`UPDATE ${pg.escapeIdentifier(schema)}.leases SET ttl_ms = ttl_ms WHERE id = $1`, [holder.status === 'granted' ? holder.lease.id : '']);
      cancelling = suite.store.cancel(waiter.id);
      await sleep(300);
    } finally {
      await blocker.query('COMMIT');
      await blocker.end();
    }
    assert.equal(await cancelling, true, 'the cancel found the lease its settle granted, and released it');

    const events = await suite.store.history({ limit: 10 });
    const granted = events.find((e) => e.type === 'acquired' && e.owner === 'waiter');
    const ended = events.find((e) => e.type === 'released' && e.owner === 'waiter');
    assert.ok(granted && ended, JSON.stringify(events));
    assert.equal(ended.reason, 'cancelled');
    assert.ok(Date.parse(ended.at) >= Date.parse(granted.at), `the lease ended at ${ended.at}, before its grant at ${granted.at}`);
  });
});
