/**
 * Checkpoints of the sqlite store's file (src/stores/sqlite/checkpointer.ts): under a steady
 * stream of writes, with no pause in which a checkpoint could catch up, the write-ahead log is
 * still started over, so the `-wal` file stays bounded. Before the restart, the log only grew:
 * about 40 KiB a lock pair, 910 MB after 21,000 pairs in one run.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { request, tempDir } from './helpers.js';

const tmp = tempDir('checkpoints');
after(tmp.remove);

const once = { waitMs: 0, waiterTtlMs: 10_000 };
const MIB = 1024 * 1024;
/** Pairs written without a pause; unbounded, the log would reach ~320 MB. */
const PAIRS = 8000;
/**
 * The log restarts past 4096 frames (16 MiB), checked every 20 ms; a restart that finds the write
 * lock taken is tried at the next check, so the file's high-water mark is larger (47 MiB measured
 * on the development machine); the bound leaves room for a loaded CI machine.
 */
const WAL_BOUND = 128 * MIB;

describe('sqlite store: checkpoints', () => {
  it('starts the write-ahead log over under writes that never pause', async () => {
    const file = join(tmp.dir, 'steady.db');
    const store = createSqliteStore(file, { synchronous: 'NORMAL' });
    try {
      let largest = 0;
      for (let i = 0; i < PAIRS; i++) {
        const outcome = await store.acquire(request({ owner: 'o', resources: ['steady'] }), once);
        assert.equal(outcome.status, 'granted');
        if (outcome.status === 'granted') assert.equal(await store.release(outcome.lease.id), true);
        if (i % 500 === 499) largest = Math.max(largest, statSync(`${file}-wal`).size);
      }
      assert.ok(largest > 0, 'the log was written');
      assert.ok(largest < WAL_BOUND, `the log stayed under ${WAL_BOUND / MIB} MiB (largest ${(largest / MIB).toFixed(1)} MiB)`);
    } finally {
      await store.close();
    }
  });
});
