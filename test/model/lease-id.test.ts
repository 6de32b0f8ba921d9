/** Lease ids: unguessable, URL-safe, and never read as a command-line option. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLeaseId, newLeaseId } from '../../src/model/request.js';

test('a lease id is 22 base64url characters, unique, and never starts with "-"', () => {
  const seen = new Set<string>();
  // 20,000 ids: with a plain base64url encoding about 1 in 64 would start with "-" (~312 here).
  for (let i = 0; i < 20_000; i++) {
    const id = newLeaseId();
    assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    assert.ok(isLeaseId(id));
    seen.add(id);
  }
  assert.equal(seen.size, 20_000);
});
