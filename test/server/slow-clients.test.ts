/**
 * Slow clients are cut: a request whose headers or body trickle in is ended once
 * `requestTimeoutMs` has passed since it began (within a quarter of it more, Node's check
 * interval), on the memory and SQLite stores, and nothing it sent is acted upon.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { testServer, type TestServer } from './helpers.js';

const TIMEOUT_MS = 1000;

/** Sends `head` then one byte of `rest` every 100 ms; resolves with the ms until the server ended the connection. */
function trickle(url: string, head: string, rest: string): Promise<{ ms: number; answer: string }> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(Number(port), '127.0.0.1');
    let answer = '';
    let i = 0;
    const timer = setInterval(() => {
      if (i < rest.length && !socket.destroyed) socket.write(rest[i++]!);
    }, 100);
    socket.on('connect', () => socket.write(head));
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ ms: performance.now() - started, answer });
    });
  });
}

for (const kind of ['memory', 'sqlite'] as const) {
  describe(`slow clients (${kind})`, () => {
    let server: TestServer;
    let dir: string;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'holdfast-slow-'));
      server = await testServer({ store: kind === 'memory' ? 'memory:' : `sqlite:${join(dir, 'slow.db')}`, requestTimeoutMs: TIMEOUT_MS });
    });
    after(async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('a trickling body and trickling headers are cut after requestTimeoutMs', async () => {
      const body = JSON.stringify({ key: 'slow/body', owner: 'slow', ttlMs: 60_000 }).padEnd(200, ' ');
      const results = await Promise.all([
        trickle(server.url, `POST /v1/leases HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body),
        trickle(server.url, 'GET /v1/locks HTTP/1.1\r\n', 'Host: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(200)),
      ]);
      for (const { ms, answer } of results) {
        assert.ok(ms >= TIMEOUT_MS - 50 && ms < TIMEOUT_MS * 1.25 + 500, `cut after ${ms.toFixed(0)} ms`);
        assert.doesNotMatch(answer, /^HTTP\/1\.1 2/, 'never answered as a success');
      }
      assert.deepEqual((await server.store.list({ prefix: 'slow/' })).locks, []);
    });
  });
}
