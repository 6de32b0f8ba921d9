/**
 * Seed 003 (Cloudron locks.js), SPEC sections 2 and 7.4: the type-to-key mapping reproduces
 * Cloudron's `canAcquire` made symmetric, checked exhaustively (every pair of lock types, by the
 * conflict rule and by really acquiring; and every reachable set of held locks); and the story:
 * backup and app task in parallel, the update waits for all, releaseOwner(taskId) after a crash.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  cloudronResources, main, TYPE_APP_BACKUP_PREFIX, TYPE_APP_TASK_PREFIX, TYPE_BOX_UPDATE, TYPE_BOX_UPDATE_TASK,
  TYPE_FULL_BACKUP_TASK_PREFIX, TYPE_MAIL_SERVER_RESTART,
} from '../../examples/cloudron-task-locks.js';
import { InvalidRequestError, openLocks, requestsConflict, type Lease, type Locks } from '../../src/index.js';
import { seedStores } from './stores.js';

/**
 * Cloudron's `canAcquire` (cloudron-box/src/locks.js, seed 003), copied as the reference: returns
 * the refusal message, or null when `type` may be acquired while the types in `data` are held.
 */
function canAcquire(data: Record<string, string>, type: string): string | null {
  if (type in data) return `Locked by ${data[type]}`;
  if (type === TYPE_BOX_UPDATE) {
    if (Object.keys(data).some((k) => k.startsWith(TYPE_APP_TASK_PREFIX))) return 'One or more app tasks are active';
    if (Object.keys(data).some((k) => k.startsWith(TYPE_APP_BACKUP_PREFIX))) return 'One or more app backups are active';
  } else if (type.startsWith(TYPE_APP_TASK_PREFIX)) {
    if (TYPE_BOX_UPDATE in data) return 'Update is active';
  } else if (type.startsWith(TYPE_FULL_BACKUP_TASK_PREFIX)) {
    if (TYPE_BOX_UPDATE_TASK in data) return 'Update task is active';
  } else if (type === TYPE_BOX_UPDATE_TASK) {
    if (Object.keys(data).some((k) => k.startsWith(TYPE_FULL_BACKUP_TASK_PREFIX))) return 'One or more backup tasks is active';
  }
  // TYPE_APP_BACKUP_PREFIX , TYPE_MAIL_SERVER_RESTART can co-run with everything except themselves
  return null;
}

/** Every lock type, with two app ids and two backup task ids. */
const TYPES = [
  `${TYPE_APP_TASK_PREFIX}a1`, `${TYPE_APP_TASK_PREFIX}a2`,
  `${TYPE_APP_BACKUP_PREFIX}a1`, `${TYPE_APP_BACKUP_PREFIX}a2`,
  TYPE_BOX_UPDATE, TYPE_BOX_UPDATE_TASK,
  `${TYPE_FULL_BACKUP_TASK_PREFIX}b1`, `${TYPE_FULL_BACKUP_TASK_PREFIX}b2`,
  TYPE_MAIL_SERVER_RESTART,
];

/** Cloudron made symmetric: two types conflict when `canAcquire` refuses them in either order. */
const cloudronConflict = (a: string, b: string): boolean =>
  canAcquire({ [a]: 'task-1' }, b) !== null || canAcquire({ [b]: 'task-2' }, a) !== null;

/** Symmetric Cloudron: may `type` join the held set `held`? */
const cloudronAllows = (held: readonly string[], type: string): boolean =>
  canAcquire(Object.fromEntries(held.map((t) => [t, `task-${t}`])), type) === null &&
  held.every((h) => canAcquire({ [type]: 'new-task' }, h) === null);

describe('seed 003: Cloudron mapping', () => {
  test('maps each type to the keys of SPEC section 2, all exclusive', () => {
    const keys = (type: string, root?: string): string => cloudronResources(type, root).map((r) => `${r.mode} ${r.key}`).join(' + ');
    assert.equal(keys('app_task_42'), 'exclusive apps/42/task');
    assert.equal(keys('app_backup_42'), 'exclusive apps/42/backup');
    assert.equal(keys('box_update'), 'exclusive apps + exclusive box/update');
    assert.equal(keys('box_update_task'), 'exclusive box/update-task + exclusive backup-tasks');
    assert.equal(keys('full_backup_task_7'), 'exclusive backup-tasks/7');
    assert.equal(keys('mail_restart'), 'exclusive mail/restart');
    assert.equal(keys('app_task_42', 'run-1'), 'exclusive run-1/apps/42/task');
    for (const bad of ['app_task_', 'platform_start', '']) {
      assert.throws(() => cloudronResources(bad), InvalidRequestError, bad);
    }
  });

  test("Cloudron's canAcquire is asymmetric (box_update vs app_backup), which is why it is made symmetric", () => {
    assert.equal(canAcquire({ [`${TYPE_APP_BACKUP_PREFIX}a1`]: 't1' }, TYPE_BOX_UPDATE), 'One or more app backups are active');
    assert.equal(canAcquire({ [TYPE_BOX_UPDATE]: 't1' }, `${TYPE_APP_BACKUP_PREFIX}a1`), null);
  });

  test('every pair of types: requestsConflict equals Cloudron made symmetric', () => {
    let conflicting = 0;
    for (const a of TYPES) {
      for (const b of TYPES) {
        const expected = cloudronConflict(a, b);
        assert.equal(requestsConflict(cloudronResources(a), cloudronResources(b)), expected, `${a} vs ${b}`);
        if (expected) conflicting++;
      }
    }
    // 9 self-conflicts + app_task/box_update and app_backup/box_update (4 each way) + full_backup/box_update_task (2 each way).
    assert.equal(conflicting, 9 + 2 * (4 + 2));
  });

  describe('on a real memory store', () => {
    let locks: Locks;
    before(async () => {
      locks = await openLocks('memory:');
    });
    after(async () => {
      await locks.close();
    });

    test('every pair of types can be held at once exactly when Cloudron made symmetric allows it', async () => {
      for (const a of TYPES) {
        for (const b of TYPES) {
          const first = await locks.acquire(cloudronResources(a), { owner: 'task-1' });
          const second = await locks.tryAcquire(cloudronResources(b), { owner: 'task-2' });
          assert.equal(second === null, cloudronConflict(a, b), `${a} held, then ${b}`);
          await second?.release();
          await first.release();
        }
      }
    });

    test('every reachable set of held locks: each type is granted exactly when Cloudron made symmetric allows it', async () => {
      let states = 0;
      for (let mask = 0; mask < 1 << TYPES.length; mask++) {
        const held = TYPES.filter((_, i) => mask & (1 << i));
        // Reachable: the held types pairwise compatible (acquired one by one, each allowed).
        if (!held.every((a, i) => held.slice(i + 1).every((b) => !cloudronConflict(a, b)))) continue;
        states++;
        const leases: Lease[] = [];
        try {
          for (const type of held) {
            const lease = await locks.tryAcquire(cloudronResources(type), { owner: `task-${type}` });
            assert.ok(lease, `${type} refused while holding ${held.join(', ')}`);
            leases.push(lease);
          }
          for (const type of TYPES) {
            const lease = await locks.tryAcquire(cloudronResources(type), { owner: `new-${type}` });
            assert.equal(lease !== null, cloudronAllows(held, type), `${type} while holding {${held.join(', ')}}`);
            await lease?.release();
          }
        } finally {
          for (const lease of leases) await lease.release();
        }
      }
      // (16 sets of app locks + box_update alone) x (4 sets of backup tasks + box_update_task alone) x (mail_restart or not)
      assert.equal(states, 17 * 5 * 2);
    });
  });
});

describe('seed 003: Cloudron task locks story', () => {
  for (const store of seedStores('cloudron')) {
    test(`on ${store.name}`, async () => {
      const r = await main({ store: store.url });
      const owner = (name: string): string => `task-${name}-${r.root.slice('cloudron-'.length)}`;

      // A backup and an app task on different apps run in parallel.
      assert.equal(r.backupAndAppTaskTogether, true);
      // The update is blocked by both, waits, and is granted only when the last one ends.
      assert.deepEqual(r.updateBlockedBy, [owner('backup-A'), owner('configure-B')]);
      assert.equal(r.updateGrantedEarly, false);
      assert.ok(r.updateHandoffMs >= 0 && r.updateHandoffMs < 500, `update granted ${r.updateHandoffMs} ms after the last release`);
      // An app task arriving meanwhile does not overtake the waiting update.
      assert.equal(r.lateAppTaskRefused, true);
      assert.equal(r.lateAppTaskBlockerState, 'queued');
      // releaseByTaskId: both locks of the crashed task ended, recorded as release-owner by the task manager.
      assert.equal(r.releasedByTaskId, 2);
      assert.equal(r.freedAfterCleanup, true);
      assert.deepEqual(r.cleanupHistory, [
        { type: 'released', reason: 'release-owner', by: 'box-taskmanager' },
        { type: 'released', reason: 'release-owner', by: 'box-taskmanager' },
      ]);
    });
  }
});
