/**
 * `GET /v1/events`: server-sent events of the store's changes with ids, resumable with
 * `Last-Event-ID` from a bounded buffer (`reset` when that is impossible), heartbeats as
 * comments, a prefix filter, expiries announced promptly by the sweeper, no lease ids.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rawRequest, SseReader, testServer, type TestServer } from './helpers.js';

describe('events', () => {
  let server: TestServer;
  const readers: SseReader[] = [];
  const follow = async (headers: Record<string, string> = {}, query = ''): Promise<SseReader> => {
    const reader = new SseReader(server.url, headers, query);
    readers.push(reader);
    assert.equal(await reader.ready, 200);
    return reader;
  };
  const post = async (body: Record<string, unknown>): Promise<{ status: number; body: any }> => // eslint-disable-line @typescript-eslint/no-explicit-any
    rawRequest(server.url, 'POST', '/v1/leases', body).answer as Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any

  before(async () => {
    server = await testServer({ heartbeatMs: 50, eventBufferSize: 5, sweepIntervalMs: 100 });
  });
  after(async () => {
    for (const reader of readers) reader.close();
    await server.close();
  });

  test('acquired, waiting, released, forced and expired arrive with ids, never with lease ids', async () => {
    const reader = await follow();
    const { body } = await post({ key: 'ev/a', owner: 'one', ttlMs: 30_000 });
    const acquired = await reader.next((e) => e.event === 'acquired' && e.data['owner'] === 'one');
    assert.match(acquired.id, /^[0-9a-f]+\.\d+$/);
    assert.deepEqual(acquired.data['keys'], ['ev/a']);
    assert.equal(acquired.data['fence'], body.lease.fence);
    assert.ok(!Number.isNaN(Date.parse(String(acquired.data['at']))));
    const waiting = rawRequest(server.url, 'POST', '/v1/leases', { key: 'ev/a', owner: 'two', waitMs: 5000 });
    await reader.next((e) => e.event === 'waiting' && e.data['owner'] === 'two');
    await rawRequest(server.url, 'DELETE', `/v1/leases/${body.lease.id}`).answer;
    await reader.next((e) => e.event === 'released' && e.data['owner'] === 'one');
    await reader.next((e) => e.event === 'acquired' && e.data['owner'] === 'two');
    await waiting.answer;
    await rawRequest(server.url, 'DELETE', '/v1/locks/ev%2Fa').answer;
    await reader.next((e) => e.event === 'forced' && e.data['owner'] === 'two');

    const short = await post({ key: 'ev/exp', owner: 'three', ttlMs: 300 });
    const expired = await reader.next((e) => e.event === 'expired' && e.data['owner'] === 'three', 3000);
    assert.ok(Date.parse(String(expired.data['at'])) >= Date.parse(short.body.lease.expiresAt));
    const ids = new Set(reader.events.map((e) => e.id));
    assert.equal(ids.size, reader.events.length, 'every event has its own id');
    assert.ok(!JSON.stringify(reader.events).includes(body.lease.id), 'an event shows a lease id');
  });

  test('a queued ticket nobody polls times out and is announced', async () => {
    const reader = await follow();
    await post({ key: 'ev/t', owner: 'holder' });
    const queued = await post({ key: 'ev/t', owner: 'ghost', waitMs: 200, queue: true });
    assert.equal(queued.status, 202);
    await reader.next((e) => e.event === 'timed-out' && e.data['owner'] === 'ghost', 3000);
  });

  test('Last-Event-ID resumes after the last event seen; an unknown or lost id gets reset', async () => {
    const first = await follow();
    for (let i = 0; i < 3; i++) await post({ key: `ev/r/${i}`, owner: `r${i}` });
    const seen = await first.next((e) => e.data['owner'] === 'r0');
    await first.next((e) => e.data['owner'] === 'r2');
    const resumed = await follow({ 'last-event-id': seen.id });
    const r1 = await resumed.next((e) => e.data['owner'] === 'r1');
    const r2 = await resumed.next((e) => e.data['owner'] === 'r2');
    assert.ok(resumed.events.indexOf(r1) < resumed.events.indexOf(r2));
    assert.ok(!resumed.events.some((e) => e.data['owner'] === 'r0'), 'an event before Last-Event-ID was sent again');

    const foreign = await follow({ 'last-event-id': 'beef.12' });
    await foreign.next((e) => e.event === 'reset');
    // The buffer holds 5 events: an id 6 events back cannot be resumed.
    for (let i = 0; i < 6; i++) await post({ key: `ev/flood/${i}`, owner: 'flood' });
    await first.next((e) => e.data['keys'] instanceof Array && (e.data['keys'] as string[]).includes('ev/flood/5'));
    const stale = await follow({ 'last-event-id': seen.id });
    await stale.next((e) => e.event === 'reset');
  });

  test('heartbeats are comments; ?prefix= narrows the stream', async () => {
    const narrowed = await follow({}, '?prefix=ev%2Fonly%2F');
    await post({ key: 'ev/other', owner: 'x' });
    await post({ key: 'ev/only/1', owner: 'y' });
    await narrowed.next((e) => e.data['owner'] === 'y');
    assert.ok(!narrowed.events.some((e) => e.data['owner'] === 'x'));
    const deadline = performance.now() + 2000;
    while (!narrowed.comments.includes('heartbeat') && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(narrowed.comments.includes('heartbeat'), `comments: ${narrowed.comments.join(', ')}`);
  });
});

test('closing the server ends event streams', async () => {
  const server = await testServer();
  const reader = new SseReader(server.url);
  assert.equal(await reader.ready, 200);
  const started = performance.now();
  await server.close();
  assert.ok(performance.now() - started < 2000, 'an open stream held the close');
  reader.close();
});
