/**
 * Seed 003, Cloudron's `locks.js`, with holdfast.
 *
 * Cloudron keeps one JSON blob of typed locks in MySQL, updated with a version check, and a
 * `canAcquire` function with the rules between types. In holdfast the rules are the shape of the
 * keys (SPEC section 2): a box update holds `apps`, which is an ancestor of every `apps/<id>/task`
 * and `apps/<id>/backup`, so it conflicts with all of them and with nothing else.
 *
 *   | Cloudron type           | holdfast keys (all exclusive)      |
 *   |-------------------------|------------------------------------|
 *   | app_task_<id>           | apps/<id>/task                     |
 *   | app_backup_<id>         | apps/<id>/backup                   |
 *   | box_update              | apps + box/update                  |
 *   | box_update_task         | box/update-task + backup-tasks     |
 *   | full_backup_task_<id>   | backup-tasks/<id>                  |
 *   | mail_restart            | mail/restart                       |
 *
 * The story: a backup of app A and a task on app B run in parallel; an update waits for both
 * (and an app task that arrives meanwhile queues behind the update instead of starving it);
 * a task crashes holding locks and the task runner cleans up with `releaseOwner(taskId)`,
 * Cloudron's `releaseByTaskId`.
 *
 * Run: `node dist/examples/cloudron-task-locks.js [STORE_URL]` (default `HOLDFAST_STORE` or `memory:`).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
// In your own code: `from 'holdfast'`.
import { InvalidRequestError, LockBusyError, openLocks, type Lease, type Locks, type Resource } from '../src/index.js';
import { openPeer, runAsScript, transcript } from './_support.js';

export const TYPE_APP_TASK_PREFIX = 'app_task_';
export const TYPE_APP_BACKUP_PREFIX = 'app_backup_';
export const TYPE_BOX_UPDATE = 'box_update';
export const TYPE_BOX_UPDATE_TASK = 'box_update_task';
export const TYPE_FULL_BACKUP_TASK_PREFIX = 'full_backup_task_';
export const TYPE_MAIL_SERVER_RESTART = 'mail_restart';

/**
 * The holdfast resources of a Cloudron lock type, all exclusive, under `root` (a key prefix, or
 * '' for none). Throws INVALID_REQUEST for an unknown type.
 */
export function cloudronResources(type: string, root = ''): Resource[] {
  const base = root === '' ? '' : `${root}/`;
  const keys = ((): string[] => {
    if (type === TYPE_BOX_UPDATE) return ['apps', 'box/update'];
    if (type === TYPE_BOX_UPDATE_TASK) return ['box/update-task', 'backup-tasks'];
    if (type === TYPE_MAIL_SERVER_RESTART) return ['mail/restart'];
    const suffix = (prefix: string): string | null => (type.startsWith(prefix) && type.length > prefix.length ? type.slice(prefix.length) : null);
    const app = suffix(TYPE_APP_TASK_PREFIX);
    if (app !== null) return [`apps/${app}/task`];
    const backedUp = suffix(TYPE_APP_BACKUP_PREFIX);
    if (backedUp !== null) return [`apps/${backedUp}/backup`];
    const backupTask = suffix(TYPE_FULL_BACKUP_TASK_PREFIX);
    if (backupTask !== null) return [`backup-tasks/${backupTask}`];
    throw new InvalidRequestError('type', `unknown Cloudron lock type ${JSON.stringify(type)}`);
  })();
  return keys.map((key) => ({ key: base + key, mode: 'exclusive', limit: null }));
}

export interface CloudronOptions {
  /** Store URL: `memory:`, `sqlite:/path/file.db`, `postgres://...` */
  store: string;
  log?: (line: string) => void;
}

export interface CloudronResult {
  root: string;
  /** The backup of app A and the task on app B were held at the same instant. */
  backupAndAppTaskTogether: boolean;
  /** Owners that blocked the update's first, try-once attempt. */
  updateBlockedBy: string[];
  /** The update was granted while an app backup or app task was still held (must be false). */
  updateGrantedEarly: boolean;
  /** From the last app lock's release to the update's grant, in ms. */
  updateHandoffMs: number;
  /** An app task arriving while the update waited was refused (it would jump the queue). */
  lateAppTaskRefused: boolean;
  /** The state of its blocker: `queued` (the waiting update). */
  lateAppTaskBlockerState: string | null;
  /** Leases ended by `releaseOwner(crashedTaskId)` (2). */
  releasedByTaskId: number;
  /** The crashed task's lock could be taken right after the cleanup. */
  freedAfterCleanup: boolean;
  /** History of the cleanup: `released` by `release-owner`, with who did it. */
  cleanupHistory: Array<{ type: string; reason: string | null; by: string | null }>;
}

export async function main(options: CloudronOptions): Promise<CloudronResult> {
  const say = transcript(options.log);
  const run = randomBytes(3).toString('hex');
  const root = `cloudron-${run}`;
  const task = (name: string): string => `task-${name}-${run}`; // Cloudron task ids, the lock owners

  const box = await openLocks(options.store, { actor: 'box-taskmanager' }); // the box process
  const worker = await openPeer(options.store, box); // a task process (Cloudron's taskworker)
  try {
    say(`store ${box.store.info.kind}, keys under ${root}/`);
    const acquire = (locks: Locks, type: string, taskId: string, waitMs = 0): Promise<Lease> =>
      locks.acquire(cloudronResources(type, root), { owner: taskId, waitMs, metadata: { message: `${type} by task ${taskId}` } });

    // A backup of app A and a task on app B: different apps, so they run in parallel.
    const backupA = await acquire(box, `${TYPE_APP_BACKUP_PREFIX}A`, task('backup-A'));
    const appTaskB = await acquire(worker, `${TYPE_APP_TASK_PREFIX}B`, task('configure-B'));
    const owners = new Set((await box.list({ prefix: root })).locks.map((l) => l.owner));
    const backupAndAppTaskTogether = owners.has(task('backup-A')) && owners.has(task('configure-B'));
    say(`app_backup_A (fence ${backupA.fence}) and app_task_B (fence ${appTaskB.fence}) run in parallel`);

    // The update needs every app quiet. Try once to see who is in the way, then wait.
    let updateBlockedBy: string[] = [];
    try {
      await acquire(box, TYPE_BOX_UPDATE, task('update'));
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      updateBlockedBy = [...new Set(error.holders.map((h) => h.owner))].sort();
      say(`box_update refused for now: ${error.message}`);
    }
    let updateGrantedAt = 0;
    const updating = acquire(box, TYPE_BOX_UPDATE, task('update'), 60_000).then((lease) => {
      updateGrantedAt = performance.now();
      return lease;
    });
    await sleep(30);
    say('box_update is waiting for all app tasks and backups');

    // An app task arriving now would overtake the waiting update: it is refused (Cloudron's
    // retry loop could starve the update this way; holdfast queues first come, first served).
    let lateAppTaskRefused = false;
    let lateAppTaskBlockerState: string | null = null;
    try {
      const late = await acquire(worker, `${TYPE_APP_TASK_PREFIX}C`, task('restart-C'));
      await late.release();
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      lateAppTaskRefused = true;
      lateAppTaskBlockerState = error.holders[0]?.state ?? null;
      say(`app_task_C refused: ${error.message}`);
    }

    await backupA.release();
    say('app_backup_A finished');
    await sleep(50);
    let updateGrantedEarly = updateGrantedAt !== 0;
    const lastReleaseAt = performance.now();
    await appTaskB.release();
    say('app_task_B finished');
    const update = await updating;
    updateGrantedEarly ||= updateGrantedAt < lastReleaseAt;
    const updateHandoffMs = updateGrantedAt - lastReleaseAt;
    say(`box_update granted ${updateHandoffMs.toFixed(1)} ms after the last app lock ended (fence ${update.fence})`);
    await update.release();
    say('box_update finished');

    // A task takes two locks and crashes without releasing them (no renewals either; long TTL,
    // so it is the cleanup, not expiry, that frees them).
    const crashed = task('crashy');
    for (const type of [`${TYPE_APP_TASK_PREFIX}C`, TYPE_MAIL_SERVER_RESTART]) {
      await worker.acquire(cloudronResources(type, root), { owner: crashed, ttlMs: '10m', autoRenew: false });
    }
    say(`task ${crashed} holds app_task_C and mail_restart, then crashes`);
    // The task runner sees the task died: Cloudron's releaseByTaskId(taskId).
    const releasedByTaskId = await box.releaseOwner(crashed);
    say(`releaseOwner(${crashed}) ended ${releasedByTaskId} leases`);
    const next = await box.tryAcquire(cloudronResources(`${TYPE_APP_TASK_PREFIX}C`, root), { owner: task('retry-C') });
    const freedAfterCleanup = next !== null;
    say(`app_task_C ${freedAfterCleanup ? 'is free again' : 'IS STILL HELD'}`);
    await next?.release();
    const cleanupHistory = (await box.history({ owner: crashed, limit: 10 }))
      .filter((e) => e.type !== 'acquired')
      .map((e) => ({ type: e.type, reason: e.reason, by: e.by }));
    say(`history: ${cleanupHistory.map((e) => `${e.type} by ${e.reason} (${e.by})`).join(', ')}`);

    return {
      root,
      backupAndAppTaskTogether,
      updateBlockedBy,
      updateGrantedEarly,
      updateHandoffMs,
      lateAppTaskRefused,
      lateAppTaskBlockerState,
      releasedByTaskId,
      freedAfterCleanup,
      cleanupHistory,
    };
  } finally {
    await worker.close();
    await box.close();
  }
}

runAsScript(import.meta.url, main);
