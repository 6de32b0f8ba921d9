/** Several processes on one SQLite file: mutual exclusion, queued hand-off, racing migrations. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { LATEST_VERSION, MIGRATIONS } from '../../../src/stores/sqlite/migrations.js';
import { startWorker, tempDir } from './helpers.js';

const tmp = tempDir('processes');
after(tmp.remove);

describe('sqlite store across processes', () => {
  it('excludes each other: start/end pairs never interleave and fences increase in file order', async () => {
    const db = join(tmp.dir, 'mutex.db');
    const log = join(tmp.dir, 'mutex.log');
    writeFileSync(log, '');
    const processes = 4;
    const iterations = 20;
    const workers = Array.from({ length: processes }, (_, i) =>
      startWorker('mutex', { db, log, iterations, owner: `worker-${i}` }),
    );
    await Promise.all(workers.map((w) => w.done));

    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2 * processes * iterations);
    let lastFence = 0;
    for (let i = 0; i < lines.length; i += 2) {
      const [startWord, startFence, startPid] = lines[i]!.split(' ');
      const [endWord, endFence, endPid] = lines[i + 1]!.split(' ');
      assert.equal(startWord, 'start', `line ${i + 1}: ${lines[i]}`);
      assert.equal(endWord, 'end', `line ${i + 2}: ${lines[i + 1]} follows ${lines[i]}`);
      assert.equal(endFence, startFence, `line ${i + 2}: interleaved`);
      assert.equal(endPid, startPid);
      assert.ok(Number(startFence) > lastFence, `fence ${startFence} after ${lastFence}`);
      lastFence = Number(startFence);
    }
    assert.equal(new Set(lines.map((l) => l.split(' ')[2])).size, processes, 'every process took part');
  });

  it('hands a queued request from one process to another when the holder releases', async () => {
    const db = join(tmp.dir, 'handoff.db');
    const holder = startWorker('hold', { db, key: 'lb/SITEB-CLS-CLOUD-01', owner: 'inventory' });
    const held = await holder.next('held');
    const waiter = startWorker('wait', { db, key: 'lb/SITEB-CLS-CLOUD-01', owner: 'second' });
    await waiter.next('queued');

    const observer = createSqliteStore(db);
    try {
      const table = await observer.list();
      assert.deepEqual(table.locks.map((l) => [l.key, l.owner, l.fence]), [['lb/SITEB-CLS-CLOUD-01', 'inventory', held['fence']]]);
      assert.deepEqual(table.waiters.map((w) => [w.key, w.owner, w.position]), [['lb/SITEB-CLS-CLOUD-01', 'second', 1]]);
    } finally {
      await observer.close();
    }

    holder.send('release');
    const released = await holder.next('released');
    assert.equal(released['released'], true);
    const granted = await waiter.next('granted');
    assert.ok((granted['fence'] as number) > (held['fence'] as number));
    assert.ok(granted.at - released.at < 1000, `granted ${Math.round(granted.at - released.at)} ms after the release`);
    await Promise.all([holder.done, waiter.done]);
  });

  it('pushes a grant made by another process to the waiting process: no polling while it waits', async () => {
    const db = join(tmp.dir, 'push.db');
    const holder = startWorker('hold', { db, key: 'lb/SITEB-CLS-CLOUD-01', owner: 'inventory' });
    const held = await holder.next('held');
    const waiter = startWorker('locks-wait', { db, key: 'lb/SITEB-CLS-CLOUD-01', owner: 'second' });
    await waiter.next('queued');
    // Long enough for a backoff poller to poll several times (5, 10, 20, ... 250 ms).
    await sleep(1000);
    holder.send('release');
    const released = await holder.next('released');
    assert.equal(released['released'], true);
    const granted = await waiter.next('granted');
    assert.ok((granted['fence'] as number) > (held['fence'] as number));
    // The grant came as a push with the lease's expiry: not one poll in the whole wait.
    assert.equal(granted['polls'], 0, `${String(granted['polls'])} polls while waiting`);
    assert.ok(granted.at - released.at < 1000, `granted ${Math.round(granted.at - released.at)} ms after the release`);
    await Promise.all([holder.done, waiter.done]);
  });

  it('lets several processes open a brand-new file at once (the migration runs once)', async () => {
    const db = join(tmp.dir, 'race.db');
    const startAt = Date.now() + 400;
    const workers = Array.from({ length: 6 }, (_, i) => startWorker('open', { db, key: `race/${i}`, startAt }));
    const opened = await Promise.all(workers.map((w) => w.next('opened')));
    await Promise.all(workers.map((w) => w.done));
    const fences = opened.map((e) => e['fence'] as number).sort((a, b) => a - b);
    assert.deepEqual(fences, [1, 2, 3, 4, 5, 6]);

    const raw = new Database(db, { readonly: true });
    try {
      const versions = raw.prepare('SELECT version FROM holdfast_migrations ORDER BY version').all() as { version: number }[];
      assert.deepEqual(versions.map((v) => v.version), MIGRATIONS.map((m) => m.version));
      assert.equal(versions.at(-1)?.version, LATEST_VERSION);
      assert.equal((raw.pragma('journal_mode', { simple: true }) as string).toLowerCase(), 'wal');
    } finally {
      raw.close();
    }
  });
});
