/**
 * Many waiters don't starve the store (issue 20): 2,000 HTTP requests waiting on one key, on
 * Postgres and on a SQLite file, and the server still answers `GET /v1/locks`, `/healthz` and a
 * fresh acquire on another key within 1 s each; past the configured bound (`maxWaiters`) a wait
 * is refused at once with 503 `STORE_UNAVAILABLE` (reason `too-many-waiters`) and `Retry-After`, and nothing is queued for it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openLocks } from '../../src/index.js';
import { dropSchema, freshSchema, POSTGRES_URL } from '../stores/postgres/helpers.js';
import { rawRequest, sleep, testServer, type RawRequest } from './helpers.js';

const WAITERS = 2000;
const dir = mkdtempSync(join(tmpdir(), 'holdfast-many-waiters-'));
const schema = freshSchema();
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await dropSchema(schema);
});

const stores = [
  { name: 'postgres', url: `${POSTGRES_URL}?schema=${schema}` },
  { name: 'sqlite', url: `sqlite:${join(dir, 'many.db')}` },
];

/** One request on a socket of its own, timed. */
async function timed(url: string, method: string, path: string, body?: unknown): Promise<{ ms: number; status: number; body: unknown }> {
  const started = performance.now();
  const { status, body: answer } = await rawRequest(url, method, path, body).answer;
  return { ms: performance.now() - started, status, body: answer };
}

for (const { name, url: storeUrl } of stores) {
  describe(`${WAITERS} waiters on one key (${name})`, () => {
    test('reads, health and a fresh acquire on another key answer within 1 s; past maxWaiters a wait gets 503 + Retry-After', { timeout: 240_000 }, async () => {
      const server = await testServer({ store: storeUrl, maxWaiters: WAITERS });
      const waits: RawRequest[] = [];
      const agentless = new http.Agent({ keepAlive: false, maxSockets: Infinity });
      try {
        const holder = await timed(server.url, 'POST', '/v1/leases', { key: 'many/hot', owner: 'holder', ttlMs: 120_000 });
        assert.equal(holder.status, 201);
        /** Waits that were answered (none should be, while the holder holds). */
        const answered: string[] = [];
        const sentFrom = performance.now();
        const at = (): string => `at ${Math.round(performance.now() - sentFrom)} ms`;
        for (let i = 0; i < WAITERS; i++) {
          const wait = rawRequest(server.url, 'POST', '/v1/leases', { key: 'many/hot', owner: `waiter-${i}`, ttlMs: 30_000, waitMs: 100_000 });
          wait.answer.then(
            (a) => answered.push(`${a.status} ${JSON.stringify(a.body).slice(0, 200)} ${at()}`),
            (e: unknown) => answered.push(`${String(e)} ${at()}`),
          );
          waits.push(wait);
          if (i % 100 === 99) await sleep(10);
        }
        // Every wait queued in the store. (On SQLite each queued acquire reads the key's whole
        // queue, to list the first waiters and their drop times: ~27 s for 2,000 on an idle
        // 2-core machine, twice that when the suite's other files share its cores.)
        const queuedBy = performance.now() + 150_000;
        for (;;) {
          const table = await timed(server.url, 'GET', '/v1/locks?prefix=many/hot');
          const waiting = (table.body as { waiters: unknown[] }).waiters.length;
          if (waiting === WAITERS) break;
          assert.ok(performance.now() < queuedBy, `only ${waiting} of ${WAITERS} queued after 150 s; ${answered.length} answered: ${answered.slice(0, 3).join('; ')}`);
          await sleep(250);
        }
        // Let the heartbeats of all of them come due at least once (waiterTtlMs 5 s: every 1.67 s).
        await sleep(2500);
        for (let round = 0; round < 3; round++) {
          const locks = await timed(server.url, 'GET', '/v1/locks');
          const health = await timed(server.url, 'GET', '/healthz');
          const fresh = await timed(server.url, 'POST', '/v1/leases', { key: `many/other-${round}`, owner: 'fresh', ttlMs: 10_000 });
          assert.equal(locks.status, 200, JSON.stringify(locks.body));
          assert.equal(health.status, 200, JSON.stringify(health.body));
          assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
          for (const [what, answer] of [['GET /v1/locks', locks], ['GET /healthz', health], ['POST /v1/leases', fresh]] as const) {
            assert.ok(answer.ms < 1000, `${what} took ${answer.ms.toFixed(0)} ms under ${WAITERS} waiters`);
          }
          await sleep(700);
        }
        // One more wait than the bound: refused at once, nothing queued for it.
        const refused = await timed(server.url, 'POST', '/v1/leases', { key: 'many/hot', owner: 'one-too-many', waitMs: 10_000 });
        assert.equal(refused.status, 503, JSON.stringify(refused.body));
        assert.equal((refused.body as { error: { code: string; reason: string } }).error.code, 'STORE_UNAVAILABLE');
        assert.equal((refused.body as { error: { reason: string } }).error.reason, 'too-many-waiters');
        const again = rawRequest(server.url, 'POST', '/v1/leases', { key: 'many/other-x', owner: 'one-too-many', waitMs: 10_000 });
        const { headers } = await again.answer;
        assert.ok(Number(headers['retry-after']) >= 1, `Retry-After: ${String(headers['retry-after'])}`);
        const table = await timed(server.url, 'GET', '/v1/locks?prefix=many/hot');
        const owners = (table.body as { waiters: Array<{ owner: string }> }).waiters.map((w) => w.owner);
        assert.ok(!owners.includes('one-too-many'));
        // A try-once is never shed: it waits for nothing.
        const tryOnce = await timed(server.url, 'POST', '/v1/leases', { key: 'many/hot', owner: 'try-once' });
        assert.equal(tryOnce.status, 409);
      } finally {
        for (const wait of waits) wait.req.destroy();
        agentless.destroy();
        await server.close();
      }
    });
  });
}

describe('a wait shed past maxWaiters', () => {
  test('the http client sends it again after Retry-After while its wait lasts, and is granted in turn', { timeout: 30_000 }, async () => {
    const server = await testServer({ maxWaiters: 1 });
    const holder = await openLocks(server.url, { owner: 'holder' });
    const first = await openLocks(server.url, { owner: 'first' });
    const second = await openLocks(server.url, { owner: 'second' });
    try {
      const held = await holder.acquire('shed/key', { ttlMs: 30_000 });
      const firstWait = first.acquire('shed/key', { waitMs: 20_000 });
      await sleep(200);
      const shed = await timed(server.url, 'POST', '/v1/leases', { key: 'shed/key', owner: 'raw', waitMs: 5000 });
      assert.equal(shed.status, 503);
      const secondWait = second.acquire('shed/key', { waitMs: 20_000 });
      await sleep(300);
      await held.release();
      const firstLease = await firstWait;
      assert.equal(firstLease.owner, 'first');
      await firstLease.release();
      const secondLease = await secondWait;
      assert.equal(secondLease.owner, 'second');
      assert.ok(secondLease.fence > firstLease.fence);
      await secondLease.release();
    } finally {
      await Promise.all([holder.close(), first.close(), second.close()]);
      await server.close();
    }
  });
});
