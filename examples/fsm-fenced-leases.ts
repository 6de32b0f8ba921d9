/**
 * Seed 004, aws-lambda-fsm-workflows leases with fence tokens, with holdfast.
 *
 * Part 1 replays the seed's `smoke` test step by step. The seed names a lease by
 * (correlation_id, steps, retries) and releases it with its fence token; holdfast names the
 * resource by a key, the holder by an owner, and the lease by an unguessable id: only that id
 * renews or releases it, which is the seed's "right fence token" made a capability.
 *
 * Part 2 is the GC-pause story of the seed's docstring (Kleppmann, "How to do distributed
 * locking"): holder 1 pauses past its lease, holder 2 gets the lease and writes, holder 1 wakes up
 * and writes late. The Postgres resource compares fences and rejects the late write; holder 1's
 * own lease had already fenced itself (its `signal` aborted before the store let holder 2 in).
 *
 * Run: `node dist/examples/fsm-fenced-leases.js [STORE_URL]` (default `HOLDFAST_STORE` or
 * `memory:`); Postgres from `HOLDFAST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/test).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
// In your own code: `from 'holdfast'`.
import {
  ensurePostgresFenceTable, fencedWritePostgres, LeaseLostError, LockBusyError, newLeaseId, openLocks,
  type FencedResult, type Lease, type Locks,
} from '../src/index.js';
import { openPeer, runAsScript, transcript } from './_support.js';

export interface FsmOptions {
  /** Store URL: `memory:`, `sqlite:/path/file.db`, `postgres://...` */
  store: string;
  /** The Postgres database that holds the fenced resource. */
  postgres?: string;
  log?: (line: string) => void;
}

export interface FsmResult {
  key: string;
  // Part 1, the seed's smoke test.
  fence1: number;
  /** What a second acquire by the same owner got ('LOCK_BUSY': not re-entrant). */
  reentry: string;
  /** What an acquire by someone else got ('LOCK_BUSY'). */
  otherAcquire: string;
  /** Someone else's release attempts: by a lease id they guessed, by their own owner name. */
  foreignReleaseById: boolean;
  foreignReleaseByOwner: number;
  /** The owner with a wrong lease id (the seed's wrong fence token). */
  wrongIdRelease: boolean;
  /** The lease was still held after those attempts. */
  heldAfterRefusals: boolean;
  /** The release with the right lease. */
  rightRelease: boolean;
  /** Someone else's short lease, and the one taken after it timed out. */
  fence2: number;
  fence3: number;
  /** The timed-out lease object: its signal had aborted, renewing it is LEASE_LOST, releasing it is false. */
  staleSignalAborted: boolean;
  staleRenew: string;
  staleRelease: boolean;
  /** The new lease survived the stale release. */
  newHeldAfterStaleRelease: boolean;
  // Part 2, the GC pause.
  holder1Fence: number;
  holder2Fence: number;
  holder2Write: FencedResult<string>;
  holder1Write: FencedResult<string>;
  /** Holder 1's lease signal aborted before holder 2 was granted (self-fencing). */
  holder1SelfFencedFirst: boolean;
  /** Holder 1's signal was aborted when it woke up. */
  holder1SignalAbortedOnWake: boolean;
  /** The row as it ended: holder 2's write, at holder 2's fence. */
  finalRow: { state: string; writer: string; fence: number } | null;
}

/** The outcome of an acquire: the fence, or the error code. */
async function attempt(fn: () => Promise<Lease>): Promise<string> {
  try {
    const lease = await fn();
    await lease.release();
    return `granted fence ${lease.fence}`;
  } catch (error) {
    if (error instanceof LockBusyError || error instanceof LeaseLostError) return error.code;
    throw error;
  }
}

export async function main(options: FsmOptions): Promise<FsmResult> {
  const say = transcript(options.log);
  const run = randomBytes(3).toString('hex');
  const correlationId = randomBytes(8).toString('hex');
  const key = `fsm-${run}/machines/${correlationId}`;
  // The seed's (steps, retries) pair names the holder.
  const owner = (steps: number, retries: number): string => `${correlationId}:step-${steps}:retry-${retries}`;

  const lambda1 = await openLocks(options.store);
  const lambda2 = await openPeer(options.store, lambda1);
  const pool = new pg.Pool({ connectionString: options.postgres ?? process.env['HOLDFAST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test', max: 4 });
  const fenceTable = `hf_fsm_fences_${run}`;
  const dataTable = `hf_fsm_data_${run}`;
  try {
    say(`store ${lambda1.store.info.kind}; machine ${key}`);

    // --- Part 1: the smoke test ---
    // can acquire lease
    const lease1 = await lambda1.acquire(key, { owner: owner(1, 1) });
    say(`acquire(1, 1) -> fence ${lease1.fence}`);
    // cannot re-acquire own lease (not re-entrant)
    const reentry = await attempt(() => lambda1.acquire(key, { owner: owner(1, 1) }));
    say(`acquire(1, 1) again -> ${reentry}`);
    // cannot acquire someone else's lease
    const otherAcquire = await attempt(() => lambda2.acquire(key, { owner: owner(1, 2) }));
    say(`acquire(1, 2) -> ${otherAcquire}`);
    // cannot release someone else's lease: (1, 2) has no lease id, and its owner holds nothing here
    const foreignReleaseById = await lambda2.release(newLeaseId());
    const foreignReleaseByOwner = await lambda2.releaseOwner(owner(1, 2), { key });
    say(`release by (1, 2) -> by a guessed id: ${foreignReleaseById}, by its owner name: ${foreignReleaseByOwner} leases`);
    // cannot release own lease with a different token: only the lease id releases
    const wrongIdRelease = await lambda1.release(newLeaseId());
    const heldAfterRefusals = (await lambda1.get(lease1.id)) !== null;
    say(`release by (1, 1) with a wrong lease id -> ${wrongIdRelease}; lease still held: ${heldAfterRefusals}`);
    // can release own lease
    const rightRelease = await lambda1.release(lease1.id);
    say(`release by (1, 1) with its lease id -> ${rightRelease}`);
    // someone else can acquire a new lease with a short timeout
    const lease2 = await lambda2.acquire(key, { owner: owner(1, 2), ttlMs: 1000, autoRenew: false });
    say(`acquire(1, 2, timeout 1 s) -> fence ${lease2.fence}; it is never renewed`);
    await sleep(1300);
    // someone else can acquire a new lease when the previous one times out
    const lease3 = await lambda2.acquire(key, { owner: owner(1, 2) });
    say(`after the timeout, acquire(1, 2) -> fence ${lease3.fence}`);
    // the timed-out lease can neither renew nor release the new one
    const staleSignalAborted = lease2.signal.aborted;
    let staleRenew = 'renewed';
    try {
      await lambda2.renew(lease2.id);
    } catch (error) {
      if (!(error instanceof LeaseLostError)) throw error;
      staleRenew = error.code;
    }
    const staleRelease = await lease2.release();
    const newHeldAfterStaleRelease = (await lambda2.get(lease3.id)) !== null;
    say(`stale lease (fence ${lease2.fence}): signal aborted ${staleSignalAborted}, renew ${staleRenew}, release ${staleRelease}; fence ${lease3.fence} still held: ${newHeldAfterStaleRelease}`);
    await lease3.release();

    // --- Part 2: the GC pause ---
    await ensurePostgresFenceTable(pool, fenceTable);
    await pool.query(`CREATE TABLE IF NOT EXISTS ${dataTable} (machine text PRIMARY KEY, state text NOT NULL, writer text NOT NULL, fence bigint NOT NULL)`);
    const writeData = (lease: Lease, writer: string, state: string): Promise<FencedResult<string>> =>
      fencedWritePostgres(pool, { resource: `machine/${correlationId}`, fence: lease.fence, table: fenceTable }, async (client) => {
        await client.query(
          `INSERT INTO ${dataTable} (machine, state, writer, fence) VALUES ($1, $2, $3, $4)
           ON CONFLICT (machine) DO UPDATE SET state = $2, writer = $3, fence = $4`,
          [correlationId, state, writer, lease.fence],
        );
        return state;
      });

    const gcKey = `${key}/dispatch`;
    // time 0: lease acquired by process 1 (it renews nothing: it is about to freeze)
    const holder1 = await lambda1.acquire(gcKey, { owner: 'lambda-1', ttlMs: 800, autoRenew: false });
    let holder1AbortedAt = Infinity;
    holder1.signal.addEventListener('abort', () => (holder1AbortedAt = performance.now()));
    say(`process 1 holds the lease (fence ${holder1.fence}, TTL 800 ms)... garbage collection pause`);
    // process 2 is already waiting for the lease
    let holder2GrantedAt = 0;
    const process2 = (async () => {
      const holder2 = await lambda2.acquire(gcKey, { owner: 'lambda-2', waitMs: '30s' });
      holder2GrantedAt = performance.now();
      // time 3 + 4: lease expired, acquired by process 2, which writes
      say(`lease expired; process 2 acquired it (fence ${holder2.fence}) and writes`);
      const result = await writeData(holder2, 'lambda-2', 'step-2-done');
      say(`process 2 write -> ${JSON.stringify(result)}`);
      return { holder2, result };
    })();
    // time 1..5: the pause lasts until process 2 has written
    const { holder2, result: holder2Write } = await process2;
    await sleep(10);
    // time 6: process 1 wakes up and writes, unaware that it lost the lease
    const holder1SignalAbortedOnWake = holder1.signal.aborted;
    say(`process 1 wakes up; its lease.signal.aborted is ${holder1SignalAbortedOnWake} (a careful holder stops here), but it writes anyway`);
    const holder1Write = await writeData(holder1, 'lambda-1', 'step-1-late');
    say(`process 1 write -> ${JSON.stringify(holder1Write)}: the late write is rejected`);
    await holder2.release();

    const { rows } = await pool.query(`SELECT state, writer, fence FROM ${dataTable} WHERE machine = $1`, [correlationId]);
    const row = rows[0] as { state: string; writer: string; fence: string } | undefined;
    const finalRow = row ? { state: row.state, writer: row.writer, fence: Number(row.fence) } : null;
    say(`row: ${JSON.stringify(finalRow)}`);

    return {
      key,
      fence1: lease1.fence,
      reentry,
      otherAcquire,
      foreignReleaseById,
      foreignReleaseByOwner,
      wrongIdRelease,
      heldAfterRefusals,
      rightRelease,
      fence2: lease2.fence,
      fence3: lease3.fence,
      staleSignalAborted,
      staleRenew,
      staleRelease,
      newHeldAfterStaleRelease,
      holder1Fence: holder1.fence,
      holder2Fence: holder2.fence,
      holder2Write,
      holder1Write,
      holder1SelfFencedFirst: holder1AbortedAt < holder2GrantedAt,
      holder1SignalAbortedOnWake,
      finalRow,
    };
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${fenceTable}, ${dataTable}`).catch(() => {});
    await pool.end();
    await lambda2.close();
    await lambda1.close();
  }
}

runAsScript(import.meta.url, main);
