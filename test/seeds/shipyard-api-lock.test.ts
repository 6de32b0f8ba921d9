/**
 * Seed 002 (Shipyard api_lock), SPEC section 7.3: two API instances (Fastify and Express) share a
 * store; while A's handler holds `configdocs/update`, B answers 409 with Shipyard's sentence and
 * Retry-After; B succeeds right after A's answer; a release failure (store down) does not fail
 * the request, and the unreleased lock ends by its TTL.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../examples/shipyard-api-lock.js';
import { seedStores } from './stores.js';

const SENTENCE = /^Blocked by another process: Another process is currently blocking this request with a lock for configdocs\/update\. Lock expires in not more than (\d+) seconds$/;

describe('seed 002: Shipyard API lock', () => {
  for (const store of seedStores('shipyard')) {
    test(`on ${store.name}`, async () => {
      const lines: string[] = [];
      const r = await main({ store: store.url, log: (line) => lines.push(line) });

      // B, while A's handler holds the lock: 409, the sentence, Retry-After, the holder.
      assert.equal(r.blockedOnB.status, 409);
      const error = r.blockedOnB.body.error!;
      assert.equal(error.code, 'LOCK_BUSY');
      const seconds = Number(SENTENCE.exec(error.message)?.[1]);
      assert.ok(seconds >= 59 && seconds <= 60, error.message);
      assert.equal(r.blockedOnB.retryAfter, String(seconds));
      assert.equal(error.holders![0]!.owner, 'shipyard-a:anonymous');
      assert.equal(error.holders![0]!.key, r.key);
      assert.equal(r.blockedOnA.status, 409, 'not re-entrant: A itself is blocked too');

      // A finishes; B's next request succeeds at once (the lock was released before A answered).
      assert.equal(r.first.status, 200);
      assert.equal(r.afterA.status, 201);

      // A store outage during C's handler: the release fails, C still answers 200, it is logged.
      assert.equal(r.duringOutage.status, 200);
      assert.equal(r.releaseErrors.length, 1);
      assert.match(r.releaseErrors[0]!, /connection refused/);
      // The unreleased lock blocks for not more than its TTL, then B gets it.
      assert.equal(r.afterOutage.status, 409);
      assert.match(r.afterOutage.body.error!.message, /not more than 1 seconds$/);
      assert.equal(r.afterExpiry.status, 201);
      assert.ok(lines.length >= 8);
    });
  }
});
