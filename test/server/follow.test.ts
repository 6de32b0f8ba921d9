/**
 * `GET /v1/events` on a store shared with other processes: what another `Locks` (another server,
 * another service) does on the same Postgres schema or SQLite file reaches this server's stream
 * through the history follower, each event once, and this server's own events are not repeated.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openStore } from '../../src/engine/open.js';
import { dropSchema, freshSchema, POSTGRES_URL } from '../stores/postgres/helpers.js';
import { rawRequest, sleep, SseReader, testServer } from './helpers.js';

const BIN = new URL('../../src/cli/main.js', import.meta.url).pathname;

/** The real `holdfast` binary in another process, on the given store; its exit code and stdout. */
function holdfast(store: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, HOLDFAST_STORE: store, HOLDFAST_SERVER: '' }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

const schema = freshSchema();
const dir = mkdtempSync(join(tmpdir(), 'holdfast-follow-'));
const shared = [
  { name: 'postgres', url: `${POSTGRES_URL}?schema=${schema}`, cleanup: () => dropSchema(schema) },
  { name: 'sqlite', url: `sqlite:${join(dir, 'shared.db')}`, cleanup: async () => rmSync(dir, { recursive: true, force: true }) },
];

for (const kind of shared) {
  describe(`events of other processes [${kind.name}]`, () => {
    after(() => kind.cleanup());

    test('another process\'s acquire and release are streamed once; this server\'s own events once', async () => {
      const store = await openStore(kind.url);
      const server = await testServer({ store, followIntervalMs: 100, sweepIntervalMs: 100 });
      const reader = new SseReader(server.url);
      try {
        assert.equal(await reader.ready, 200);
        await sleep(250); // the follower's baseline: what happened before is not news
        const byOther = (type: string, key: string) => (e: { event: string; data: Record<string, unknown> }): boolean =>
          e.event === type && e.data['owner'] === 'other-service' && JSON.stringify(e.data['keys']) === JSON.stringify([key]);

        // Another process runs a command under a lock: acquired, then released.
        assert.equal((await holdfast(kind.url, ['run', 'follow/a', '--owner', 'other-service', '--', 'true'])).code, 0);
        const acquired = await reader.next(byOther('acquired', 'follow/a'));
        const released = await reader.next(byOther('released', 'follow/a'));
        assert.equal(released.data['fence'], acquired.data['fence']);

        // Another process takes a lease and leaves it to run out: this server's sweeper settles it.
        const taken = await holdfast(kind.url, ['acquire', 'follow/b', '--owner', 'other-service', '--ttl', '300ms']);
        assert.equal(taken.code, 0);
        const fence = Number(taken.stdout.trim().split(/\s+/)[1]);
        await reader.next((e) => e.event === 'acquired' && e.data['fence'] === fence);
        await reader.next((e) => e.event === 'expired' && e.data['fence'] === fence);

        // This server's own acquire: streamed by the store's watch, not again by the follower.
        const { body } = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'follow/c', owner: 'me', ttlMs: 30_000 })
          .answer as { body: { lease: { fence: number } } };
        await reader.next((e) => e.event === 'acquired' && e.data['fence'] === body.lease.fence);
        await sleep(400);
        const count = (type: string, f: unknown): number => reader.events.filter((e) => e.event === type && e.data['fence'] === f).length;
        assert.equal(count('acquired', acquired.data['fence']), 1);
        assert.equal(count('released', acquired.data['fence']), 1);
        assert.equal(count('acquired', fence), 1);
        assert.equal(count('expired', fence), 1);
        assert.equal(count('acquired', body.lease.fence), 1);
      } finally {
        reader.close();
        await server.close();
        await store.close();
      }
    });

    test('a client back within resumeWindowMs gets what another process did meanwhile; after it, a reset', async () => {
      const store = await openStore(kind.url);
      const windowMs = 3000;
      const server = await testServer({ store, followIntervalMs: 50, sweepIntervalMs: 100, resumeWindowMs: windowMs });
      const readers: SseReader[] = [];
      const connect = (lastEventId?: string): SseReader => {
        const reader = new SseReader(server.url, lastEventId === undefined ? {} : { 'last-event-id': lastEventId });
        readers.push(reader);
        return reader;
      };
      const byOther = (type: string, key: string) => (e: { event: string; data: Record<string, unknown> }): boolean =>
        e.event === type && e.data['owner'] === 'other-service' && JSON.stringify(e.data['keys']) === JSON.stringify([key]);
      try {
        const first = connect();
        assert.equal(await first.ready, 200);
        await sleep(150); // the follower's baseline
        const { body } = await rawRequest(server.url, 'POST', '/v1/leases', { key: 'resume/own', owner: 'me', ttlMs: 30_000 })
          .answer as { body: { lease: { fence: number } } };
        const own = await first.next((e) => e.event === 'acquired' && e.data['fence'] === body.lease.fence);
        first.close();

        // Away for less than the window: another process's run is followed meanwhile and replayed.
        const startedAt = performance.now();
        assert.equal((await holdfast(kind.url, ['run', 'resume/a', '--owner', 'other-service', '--', 'true'])).code, 0);
        await sleep(200);
        assert.ok(performance.now() - startedAt < windowMs, 'the other process took longer than the window');
        const back = connect(own.id);
        assert.equal(await back.ready, 200);
        const released = await back.next(byOther('released', 'resume/a'));
        assert.ok(back.events.some(byOther('acquired', 'resume/a')), 'the acquire is replayed before the release');
        assert.ok(!back.events.some((e) => e.event === 'reset'));
        back.close();

        // Away for longer: the server stops following, so a resume would miss what others did: reset.
        await sleep(windowMs + 300);
        assert.equal((await holdfast(kind.url, ['run', 'resume/b', '--owner', 'other-service', '--', 'true'])).code, 0);
        const late = connect(released.id);
        assert.equal(await late.ready, 200);
        await late.next((e) => e.event === 'reset');
        assert.ok(!late.events.some(byOther('acquired', 'resume/b')), 'no replay without the others\' events');
      } finally {
        for (const reader of readers) reader.close();
        await server.close();
        await store.close();
      }
    });
  });
}
