/**
 * Seed 001, oVirt's "Detailed Lock Mechanism", with holdfast.
 *
 * An oVirt command declares read ("shared") and write ("exclusive") locks on entities and takes
 * them all at once before canDoAction. With holdfast:
 *   1. ActivateStorageDomain(D1) takes `shared pools/P` + `exclusive domains/D1` in one request:
 *      all or nothing, so it never holds the pool while waiting for the domain.
 *   2. ActivateStorageDomain(D2) of the same pool runs at the same time (shared + shared is fine).
 *   3. A command blocked by them reads the holder's message ("Storage domain D1 is being
 *      activated") from the LOCK_BUSY error, oVirt's per-lock canDoAction message.
 *   4. Reconstruct needs `exclusive pools/P`: it waits for both activations and is granted when
 *      the second one ends.
 *   5. CreateVmFromTemplate keeps its read lock on the template after execute(), until its async
 *      tasks end (endAction). The AsyncTaskManager, another process, renews that lease by its id,
 *      and after the engine crashes and restarts finds it still in the (durable) store, takes it
 *      over with `attach(id)`, and releases it by its id when the tasks are done.
 *
 * Run: `node dist/examples/ovirt-command-locks.js [STORE_URL]` (default `HOLDFAST_STORE` or
 * `memory:`; the restart part needs a durable store such as `sqlite:/tmp/ovirt.db`).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
// In your own code: `from 'holdfast'`.
import { LockBusyError, openLocks, type Locks } from '../src/index.js';
import { openPeer, runAsScript, transcript } from './_support.js';

export interface OvirtOptions {
  /** Store URL: `memory:`, `sqlite:/path/file.db`, `postgres://...` */
  store: string;
  log?: (line: string) => void;
}

export interface OvirtResult {
  root: string;
  /** The resources of ActivateStorageDomain(D1)'s single lease. */
  activateD1Resources: Array<{ key: string; mode: string }>;
  /** Shared holders of pools/P while both activations run (2). */
  poolHoldersTogether: number;
  /** LOCK_BUSY message read by DeactivateStorageDomain(D1). */
  blockedMessage: string;
  /** `metadata.message` of each holder in that error. */
  blockedHolderMessages: string[];
  /** The blocked request held nothing, not even its shared pool lock (all or nothing). */
  blockedCallerHeldNothing: boolean;
  /** Owners blocking Reconstruct when it first tried (both activations). */
  reconstructBlockedBy: string[];
  /** Reconstruct's place in the pool's queue while it waited. */
  reconstructQueued: boolean;
  /** Reconstruct was granted after only one activation ended (must be false). */
  reconstructGrantedAfterFirstRelease: boolean;
  /** From the second activation's release to Reconstruct's grant, in ms. */
  reconstructHandoffMs: number;
  /** LOCK_BUSY message read by RemoveTemplate while the VM creation's async tasks run. */
  removeTemplateBlockedMessage: string;
  templateFence: number;
  /** expiresAt (ms) before and after the task manager renewed the lease by id. */
  expiresBeforeRenew: number;
  expiresAfterRenew: number;
  /** The engine crashed and everything was reopened (only on durable stores). */
  restarted: boolean;
  /** The lease as read after the restart (or before it, without a restart), by id. */
  leaseAfterRestart: { owner: string; fence: number } | null;
  /** The task manager's `attach(id)` took the lease over with the same fence. */
  attachedFence: number;
  /** `release(id)` from the task manager returned true. */
  releasedById: boolean;
  /** The lease is gone after that release. */
  goneAfterRelease: boolean;
  /** RemoveTemplate's fence once the template was free. */
  removeTemplateFence: number;
}

export async function main(options: OvirtOptions): Promise<OvirtResult> {
  const say = transcript(options.log);
  const root = `ovirt-${randomBytes(3).toString('hex')}`;
  const pool = `${root}/pools/P`;
  const domain = (id: string): string => `${root}/domains/${id}`;
  const template = `${root}/templates/T`;

  const engine = await openLocks(options.store); // the oVirt engine (JBoss)
  let taskManager = await openPeer(options.store, engine); // the AsyncTaskManager, another process
  const opened: Locks[] = [engine, taskManager];
  try {
    say(`store ${engine.store.info.kind} (durable: ${engine.store.info.durable}), entities under ${root}/`);

    // 1 + 2. Two activations of domains of pool P: each takes its locks in one request, and they run together.
    const activate = (id: string) =>
      engine.acquire(
        [{ key: pool, mode: 'shared' }, { key: domain(id), mode: 'exclusive' }],
        { owner: `ActivateStorageDomain-${id}`, metadata: { message: `Storage domain ${id} is being activated` } },
      );
    const [d1, d2] = await Promise.all([activate('D1'), activate('D2')]);
    say(`ActivateStorageDomain(D1) holds ${d1.resources.map((r) => `${r.mode} ${r.key}`).join(' + ')} (fence ${d1.fence})`);
    say(`ActivateStorageDomain(D2) holds ${d2.resources.map((r) => `${r.mode} ${r.key}`).join(' + ')} (fence ${d2.fence})`);
    const table = await engine.list({ prefix: root });
    const poolHoldersTogether = table.locks.filter((l) => l.key === pool).length;
    say(`pools/P has ${poolHoldersTogether} shared holders at once`);

    // 3. DeactivateStorageDomain(D1) cannot run; its canDoAction message is the holder's message.
    let blockedMessage = '';
    let blockedHolderMessages: string[] = [];
    try {
      await engine.acquire([{ key: pool, mode: 'shared' }, { key: domain('D1'), mode: 'exclusive' }], { owner: 'DeactivateStorageDomain-D1' });
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      blockedMessage = error.message;
      blockedHolderMessages = error.holders.map((h) => String(h.metadata['message']));
    }
    say(`DeactivateStorageDomain(D1) refused: ${blockedMessage}`);
    const afterRefusal = await engine.list({ prefix: root });
    const blockedCallerHeldNothing = !afterRefusal.locks.some((l) => l.owner === 'DeactivateStorageDomain-D1');

    // 4. Reconstruct needs the pool exclusively: it is blocked by both activations, then waits.
    const reconstructOptions = { owner: 'ReconstructMasterDomain', metadata: { message: 'Pool P is being reconstructed' } };
    let reconstructBlockedBy: string[] = [];
    try {
      await engine.acquire(pool, { ...reconstructOptions, waitMs: 0 });
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      reconstructBlockedBy = error.holders.map((h) => h.owner).sort();
    }
    say(`Reconstruct is blocked by ${reconstructBlockedBy.join(' and ')}; it waits`);
    let reconstructGrantedAt = 0;
    const reconstructing = engine.acquire(pool, { ...reconstructOptions, waitMs: '5m' }).then((lease) => {
      reconstructGrantedAt = performance.now();
      return lease;
    });
    // Its place in the queue, as the dashboard shows it (a busy database may take a while to queue it).
    const isQueued = async (): Promise<boolean> =>
      (await engine.list({ prefix: root })).waiters.some((w) => w.owner === 'ReconstructMasterDomain' && w.key === pool);
    let reconstructQueued = await isQueued();
    for (const giveUpAt = performance.now() + 5000; !reconstructQueued && performance.now() < giveUpAt;) {
      await sleep(20);
      reconstructQueued = await isQueued();
    }
    await d1.release();
    say('ActivateStorageDomain(D1) ended');
    await sleep(100);
    const reconstructGrantedAfterFirstRelease = reconstructGrantedAt !== 0;
    say(`Reconstruct ${reconstructGrantedAfterFirstRelease ? 'WAS GRANTED (wrong)' : 'still waits for D2'}`);
    const secondReleaseAt = performance.now();
    await d2.release();
    say('ActivateStorageDomain(D2) ended');
    const reconstruct = await reconstructing;
    const reconstructHandoffMs = reconstructGrantedAt - secondReleaseAt;
    say(`Reconstruct granted ${reconstructHandoffMs.toFixed(1)} ms later (fence ${reconstruct.fence})`);
    await reconstruct.release();

    // 5. CreateVmFromTemplate: the read lock on the template outlives execute(), until the async tasks end.
    const vmLease = await engine.acquire(template, {
      owner: 'AddVmFromTemplate-vm1', mode: 'shared', ttlMs: '20s',
      metadata: { message: 'Template T is in use: VM vm1 is being created from it' },
    });
    const taskRecord = { taskId: 'task-vm1-disk-copy', leaseId: vmLease.id }; // kept with the async task in the engine DB
    say(`AddVmFromTemplate(vm1): execute() done, async tasks running, template lease kept (fence ${vmLease.fence})`);
    let removeTemplateBlockedMessage = '';
    try {
      await engine.acquire(template, { owner: 'RemoveTemplate-T' });
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      removeTemplateBlockedMessage = error.message;
    }
    say(`RemoveTemplate refused: ${removeTemplateBlockedMessage}`);

    // The AsyncTaskManager (another process) keeps the lease alive by its id while it polls the tasks.
    const expiresBeforeRenew = vmLease.expiresAt.getTime();
    const renewed = await taskManager.renew(taskRecord.leaseId, { ttlMs: '60s' });
    say(`task manager renewed the lease by id: expires at ${new Date(renewed.expiresAt).toISOString()}`);

    // The engine restarts: it shuts down without releasing the leases its async tasks still need
    // (`close({ release: false })`, just as a crash would leave them), and comes back up.
    let restarted = false;
    if (engine.store.info.durable) {
      await engine.close({ release: false });
      await taskManager.close(); // the task manager holds no lease object, so closing releases nothing
      taskManager = await openLocks(options.store);
      opened.push(taskManager);
      restarted = true;
      say('engine restarted without releasing; task manager restarted on the same store');
    } else {
      say('this store is not durable: no restart step (try sqlite:/tmp/ovirt.db)');
    }
    const record = await taskManager.get(taskRecord.leaseId);
    const leaseAfterRestart = record ? { owner: record.owner, fence: record.fence } : null;
    say(`lease of ${taskRecord.taskId} ${record ? `is still there: owner ${record.owner}, fence ${record.fence}` : 'IS GONE'}`);

    // On load the task manager takes the task's lock over (oVirt: "all appropriate locks will be acquired again")...
    const resumed = await taskManager.attach(taskRecord.leaseId);
    say(`task manager attached the lease (fence ${resumed.fence}); it renews it while the tasks finish`);
    await sleep(50);
    // ...and endAction() releases it by its id.
    const releasedById = await taskManager.release(taskRecord.leaseId);
    const goneAfterRelease = (await taskManager.get(taskRecord.leaseId)) === null;
    say(`endAction(): release by id -> ${releasedById}`);

    const remove = await taskManager.acquire(template, { owner: 'RemoveTemplate-T' });
    say(`RemoveTemplate now runs (fence ${remove.fence})`);
    await remove.release();

    return {
      root,
      activateD1Resources: d1.resources.map((r) => ({ key: r.key, mode: r.mode })),
      poolHoldersTogether,
      blockedMessage,
      blockedHolderMessages,
      blockedCallerHeldNothing,
      reconstructBlockedBy,
      reconstructQueued,
      reconstructGrantedAfterFirstRelease,
      reconstructHandoffMs,
      removeTemplateBlockedMessage,
      templateFence: vmLease.fence,
      expiresBeforeRenew,
      expiresAfterRenew: renewed.expiresAt,
      restarted,
      leaseAfterRestart,
      attachedFence: resumed.fence,
      releasedById,
      goneAfterRelease,
      removeTemplateFence: remove.fence,
    };
  } finally {
    for (const locks of opened.reverse()) await locks.close();
  }
}

runAsScript(import.meta.url, main);
