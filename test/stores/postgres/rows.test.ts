/**
 * Row invariants of the Postgres store's tables that no constraint enforces (key rows have
 * no foreign key to their lease, baseline part 11): after a mix of every operation (lean and full
 * acquires, shared and several-key leases, hand-offs, renewals, releases, expiries settled by
 * sweeps, releaseOwner, forceRelease, lock-delays), every key row belongs to a lease and every
 * lease has exactly its resources as key rows.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { acquireWaiting, admin, request, sleep, suiteStore } from './helpers.js';

const once = { waitMs: 0, waiterTtlMs: 5000 };

describe('postgres store: key rows follow their leases', () => {
  const suite = suiteStore();
  const { schema } = suite;
  const table = (name: string): string => `${pg.escapeIdentifier(schema)}.${name}`;

  async function orphans(): Promise<{ held: number; mismatched: number; waiting: number }> {
    const [row] = await admin<{ held: string; mismatched: string; waiting: string }>(`
      SELECT (SELECT count(*) FROM ${table('held')} h WHERE NOT EXISTS (SELECT 1 FROM ${table('leases')} l WHERE l.id = h.lease_id)) AS held,
             (SELECT count(*) FROM ${table('leases')} l
              WHERE jsonb_array_length(l.resources) <> (SELECT count(*) FROM ${table('held')} h WHERE h.lease_id = l.id)) AS mismatched,
             (SELECT count(*) FROM ${table('waiting')} w WHERE NOT EXISTS (SELECT 1 FROM ${table('waiters')} q WHERE q.id = w.waiter_id)) AS waiting`);
    return { held: Number(row!.held), mismatched: Number(row!.mismatched), waiting: Number(row!.waiting) };
  }

  test('a mix of every operation leaves no key row without its lease', async () => {
    const granted = async (input: Parameters<typeof request>[0]): Promise<string> => {
      const out = await suite.store.acquire(request(input), once);
      assert.equal(out.status, 'granted', JSON.stringify(input));
      return out.status === 'granted' ? out.lease.id : '';
    };
    // Lean paths: one exclusive key, root-level and deeper; released normally.
    for (const key of ['rows-a', 'rows-b/1', 'rows-b/2/x']) {
      assert.equal(await suite.store.release(await granted({ owner: 'lean', resources: [key] })), true);
    }
    // Full paths: several keys under several roots, shared with a limit, a requestId.
    const multi = await granted({ owner: 'full', resources: ['rows-c/1', 'rows-d/1'] });
    const shared1 = await granted({ owner: 'full', resources: [{ key: 'rows-e', mode: 'shared', limit: 2 }] });
    const shared2 = await granted({ owner: 'full', resources: [{ key: 'rows-e', mode: 'shared', limit: 2 }] });
    const withRequestId = await granted({ owner: 'full', resources: ['rows-f'], requestId: 'r-1' });
    assert.equal((await suite.store.renew(multi, 30_000)).status, 'renewed');
    assert.equal(await suite.store.release(multi), true);
    assert.equal(await suite.store.release(shared1), true);
    assert.equal(await suite.store.release(withRequestId), true);

    // A hand-off (lean release to the first waiter of the same key) and a promotion through the
    // full path (the waiter needs two keys).
    const holder = await granted({ owner: 'h', resources: ['rows-g'] });
    const waiter = acquireWaiting(suite.store, request({ owner: 'w', resources: ['rows-g'] }), 5000);
    const waiter2 = acquireWaiting(suite.store, request({ owner: 'w2', resources: ['rows-g', 'rows-h'] }), 5000);
    await sleep(100);
    assert.equal(await suite.store.release(holder), true);
    const handed = await waiter;
    assert.ok(handed, 'the first waiter is granted');
    assert.equal(await suite.store.release(handed.id), true);
    const promoted = await waiter2;
    assert.ok(promoted, 'the second waiter is granted');

    // Expiries settled by a sweep (one with a lock-delay), releaseOwner, forceRelease.
    await granted({ owner: 'short', resources: ['rows-i/1'], ttlMs: 100 });
    await granted({ owner: 'short', resources: ['rows-j'], ttlMs: 100, lockDelayMs: 100 });
    await granted({ owner: 'many', resources: ['rows-k/1'] });
    await granted({ owner: 'many', resources: ['rows-k/2', 'rows-l'] });
    await granted({ owner: 'forced', resources: ['rows-m/1'] });
    await sleep(250);
    await suite.store.sweep();
    assert.equal(await suite.store.releaseOwner('many', { by: 'test' }), 2);
    assert.equal(await suite.store.forceRelease('rows-m/1', { by: 'admin' }), 1);
    assert.equal(await suite.store.release(promoted.id), true);
    assert.equal(await suite.store.release(shared2), true);

    assert.deepEqual(await orphans(), { held: 0, mismatched: 0, waiting: 0 });
    const [left] = await admin<{ leases: string; held: string }>(
      `SELECT (SELECT count(*) FROM ${table('leases')}) AS leases, (SELECT count(*) FROM ${table('held')}) AS held`);
    assert.deepEqual(left, { leases: '0', held: '0' }, 'every lease ended, with its key rows');
  });
});
