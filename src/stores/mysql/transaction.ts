/**
 * One full operation of the `mysql://` store (the paths of lean.ts could not decide it) in two
 * batches, each one multi-statement query of mysql2:
 *
 *   1. read the versions of the roots of the operation's keys (hf_roots), then the database clock,
 *      every live row under those roots and the rows the operation looks up; the shared
 *      algorithm then runs on that snapshot, in this process;
 *   2. in one READ COMMITTED transaction: lock the roots (FOR UPDATE, in sorted order), check
 *      that their versions are still the ones read (else the batch stops with an error, rolls
 *      back and the operation runs again from 1), bump them, the snapshot's writes (a sweep also
 *      reads the store-wide next due time), COMMIT.
 *
 * So no lock is held while this process thinks: a client paused between the batches (a GC
 * pause, SIGSTOP) blocks nobody. Every write under a root, here and in lean.ts, bumps its
 * version inside the transaction that holds its lock, so a snapshot that committed is exactly
 * what a locked read would have seen (per root, serializable). After OPTIMISTIC_ATTEMPTS
 * conflicts in a row the operation takes the locks in batch 1 instead and holds them to its
 * commit, so a busy root can't starve it. An operation that finds it needs more roots
 * (`NeedRoots`: a waiter it would grant also holds keys elsewhere, a lease looked up by id) runs
 * again with all of them; locks are always taken in sorted order, so operations never deadlock
 * each other. A deadlock or lock-wait timeout the database reports anyway is rolled back
 * explicitly and retried here, never surfaced.
 */
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { StoreUnavailableError } from '../../model/errors.js';
import type { LeaseRecord } from '../../model/types.js';
import type { Result } from '../table/operations.js';
import { isFatal, isRetryable, nextDueOf, text, toDelay, toHoldfastError, toLease, toWaiter, type Row } from './convert.js';
import { NeedRoots, rootOf, SnapshotState, type Loaded, type Write } from './snapshot.js';
import * as sql from './sql.js';

/** What an operation reads besides the rows under its roots. */
export interface OperationSpec<T> {
  /** Roots to lock from the start (sorted here). */
  roots: Iterable<string>;
  /** Leases and waiters looked up by id (live or ended). */
  ids?: string[] | undefined;
  request?: { owner: string; requestId: string } | undefined;
  /** The live leases of an owner (releaseOwner). */
  owner?: string | undefined;
  /** May run again after its connection dropped mid-way (same effect, same answer). */
  idempotent: boolean;
  /**
   * Read the store-wide next due time after the writes (the sweep does, to find what other
   * processes left due). Otherwise it is the earliest due time under the locked roots, from the
   * snapshot after its writes (no four `MIN()`s per operation).
   * @default false
   */
  readNextDue?: boolean | undefined;
  run(state: SnapshotState): Result<T>;
}

export interface Outcome<T> {
  result: Result<T>;
  /** The next due time after the commit (null: none; undefined: nothing was written). */
  nextDue: number | null | undefined;
  /** The newest change-log id read in the first batch (a watcher for a new ticket starts there). */
  changeId: number;
}

type Statement = [text: string, values: unknown[]];

async function batch(connection: PoolConnection, statements: Statement[]): Promise<unknown[]> {
  const [results] = await connection.query(
    statements.map(([text]) => text).join(';\n'),
    statements.flatMap(([, values]) => values),
  );
  return results as unknown as unknown[];
}

const rows = (result: unknown): Row[] => result as RowDataPacket[] as Row[];

/** Optimistic attempts (versions checked at commit) before an operation holds its locks throughout. */
const OPTIMISTIC_ATTEMPTS = 3;

/** The versions read in batch 1 changed before batch 2 locked them (the check's error, 1242). */
function isConflict(error: unknown): boolean {
  return (error as { errno?: unknown } | null)?.errno === 1242;
}

export interface TransactionOptions {
  maxAttempts: number;
  origin: string;
}

export class Transactions {
  readonly #pool: Pool;
  readonly #options: TransactionOptions;
  /** Background COMMITs of operations that wrote nothing (their locks are released meanwhile). */
  readonly pending = new Set<Promise<unknown>>();

  constructor(pool: Pool, options: TransactionOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  async run<T>(spec: OperationSpec<T>, signal: AbortSignal | undefined): Promise<Outcome<T>> {
    const roots = new Set(spec.roots);
    let conflicts = 0;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      let connection: PoolConnection;
      try {
        connection = await this.#pool.getConnection();
      } catch (error) {
        throw toHoldfastError(error);
      }
      let open = false;
      let healthy = true;
      const locking = conflicts >= OPTIMISTIC_ATTEMPTS;
      try {
        for (;;) {
          const sorted = [...roots].sort();
          open = locking;
          const loaded = await this.#load(connection, sorted, spec, locking);
          const state = new SnapshotState(loaded.loaded);
          let result: Result<T>;
          try {
            result = spec.run(state);
          } catch (error) {
            if (!(error instanceof NeedRoots)) throw error;
            for (const root of error.roots) roots.add(root);
            if (locking) await connection.query(sql.ROLLBACK);
            open = false;
            continue;
          }
          if (state.writes.length === 0) {
            if (locking) {
              open = false;
              this.#commitLater(connection);
              connection = null as unknown as PoolConnection; // released by #commitLater
            }
            return { result, nextDue: undefined, changeId: loaded.changeId };
          }
          open = true;
          const read = await this.#write(
            connection, sorted, locking ? null : loaded.versions, state.writes, result, loaded.loaded.now, spec.readNextDue === true,
          );
          open = false;
          return { result, nextDue: read === undefined ? state.dueAfterWrites() : read, changeId: loaded.changeId };
        }
      } catch (error) {
        if (isFatal(error)) healthy = false;
        if (open && healthy) await connection!.query(sql.ROLLBACK).catch(() => (healthy = false));
        if (isConflict(error) && attempt < this.#options.maxAttempts) {
          conflicts++;
          continue;
        }
        if (isRetryable(error) && attempt < this.#options.maxAttempts) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 * attempt)));
          continue;
        }
        if (isFatal(error) && spec.idempotent && attempt === 1) continue;
        if (isRetryable(error) || isConflict(error)) {
          throw new StoreUnavailableError(`MySQL: the operation conflicted or was rolled back ${attempt} times`, { cause: error });
        }
        throw toHoldfastError(error);
      } finally {
        if (connection! !== null) {
          if (healthy) connection!.release();
          else connection!.destroy();
        }
      }
    }
  }

  #commitLater(connection: PoolConnection): void {
    const done = connection.query(sql.COMMIT).then(
      () => connection.release(),
      () => connection.destroy(),
    );
    this.pending.add(done);
    void done.finally(() => this.pending.delete(done));
  }

  async #load<T>(
    connection: PoolConnection, roots: string[], spec: OperationSpec<T>, locking: boolean,
  ): Promise<{ loaded: Loaded; changeId: number; versions: Map<string, number> }> {
    const statements: Statement[] = [[sql.SESSION, []]];
    if (roots.length > 0) statements.push([sql.ENSURE_ROOTS, [roots.map((r) => [r])]]);
    if (locking) statements.push([sql.READ_COMMITTED, []], ['START TRANSACTION', []]);
    const at: Record<string, number> = {};
    const add = (name: string, statement: Statement): void => {
      at[name] = statements.length;
      statements.push(statement);
    };
    if (roots.length > 0) add('versions', [locking ? sql.LOCK_ROOTS : sql.ROOT_VERSIONS, [roots]]);
    add('now', [sql.NOW, []]);
    if (roots.length > 0) {
      add('leases', [sql.LEASES_UNDER, [roots]]);
      add('waiters', [sql.WAITERS_UNDER, [roots]]);
      add('delays', [sql.DELAYS_UNDER, [roots]]);
    }
    if (spec.ids && spec.ids.length > 0) {
      add('leaseIds', [sql.LEASES_BY_ID, [spec.ids]]);
      add('waiterIds', [sql.WAITERS_BY_ID, [spec.ids]]);
    }
    if (spec.request) {
      add('leaseRequest', [sql.LEASE_BY_REQUEST, [spec.request.owner, spec.request.requestId]]);
      add('waiterRequest', [sql.WAITER_BY_REQUEST, [spec.request.owner, spec.request.requestId]]);
    }
    if (spec.owner !== undefined) add('owner', [sql.LEASES_OF_OWNER, [spec.owner]]);
    const results = await batch(connection, statements);
    const get = (name: string): Row[] => (at[name] === undefined ? [] : rows(results[at[name]!]));
    const now = get('now')[0]!;
    const live = new Map<string, LeaseRecord>();
    const ended = new Set<string>();
    const addLease = (row: Row): LeaseRecord => {
      const lease = toLease(row);
      if (row['ended_at'] !== null && row['ended_at'] !== undefined) ended.add(lease.id);
      else if (!live.has(lease.id)) live.set(lease.id, lease);
      return live.get(lease.id) ?? lease;
    };
    for (const row of get('leases')) addLease(row);
    for (const row of get('leaseIds')) addLease(row);
    const leaseByRequest = get('leaseRequest').map(addLease)[0];
    const ownerLeases = spec.owner === undefined ? undefined : get('owner').map(addLease);
    const waiters = new Map<string, ReturnType<typeof toWaiter>>();
    for (const row of [...get('waiters'), ...get('waiterIds'), ...get('waiterRequest')]) {
      const waiter = toWaiter(row);
      if (!waiters.has(waiter.id)) waiters.set(waiter.id, waiter);
    }
    const waiterRow = get('waiterRequest')[0];
    const versions = new Map(get('versions').map((row) => [text(row['root']), Number(row['version'])]));
    return {
      versions,
      loaded: {
        now: Number(now['now']),
        locked: new Set(roots),
        leases: [...live.values()].filter((l) => !ended.has(l.id)),
        ended,
        waiters: [...waiters.values()],
        delays: get('delays').map(toDelay),
        leaseByRequest,
        waiterByRequest: waiterRow === undefined ? undefined : waiters.get(toWaiter(waiterRow).id),
        ownerLeases,
      },
      changeId: Number(now['change_id']),
    };
  }

  /**
   * Sends the writes (and, with `readNextDue`, reads the store-wide next due time), commits; then
   * gives the inserted leases their fences. With `versions` (optimistic), the transaction starts
   * here: lock, check, bump. Answers the next due time read, or undefined when none was read.
   */
  async #write<T>(
    connection: PoolConnection, roots: string[], versions: Map<string, number> | null, writes: Write[], result: Result<T>, now: number,
    readNextDue: boolean,
  ): Promise<number | null | undefined> {
    const statements: Statement[] = [[sql.SESSION, []]];
    if (versions !== null) {
      statements.push([sql.READ_COMMITTED, []], ['START TRANSACTION', []]);
      if (roots.length > 0) {
        statements.push([sql.LOCK_ROOTS, [roots]]);
        const pairs = roots.map((root) => [root, versions.get(root) ?? -1]);
        statements.push([sql.checkVersions(roots.length), [...pairs.flat(), roots.length]]);
      }
    }
    if (roots.length > 0) statements.push([sql.BUMP_VERSIONS, [roots]]);
    const inserted: Array<{ index: number; lease: LeaseRecord }> = [];
    for (const w of writes) {
      switch (w.kind) {
        case 'insert-lease': {
          const l = w.lease;
          inserted.push({ index: statements.length, lease: l });
          statements.push([sql.INSERT_LEASE, [
            l.id, l.owner, l.requestId, JSON.stringify(l.resources), JSON.stringify(l.metadata), l.ttlMs, l.lockDelayMs, l.acquiredAt, l.expiresAt,
          ]]);
          statements.push([sql.insertKeys('hf_lease_keys', l.resources.length), l.resources.flatMap((r) => [r.key, rootOf(r.key)])]);
          if (w.fromQueue) {
            statements.push([sql.LOG_GRANT, [
              this.#options.origin, now, l.id, l.expiresAt, l.owner, JSON.stringify(l.resources.map((r) => r.key)),
            ]]);
          }
          break;
        }
        case 'end-lease':
          statements.push([sql.END_LEASE, [w.at, w.type, w.reason, w.by, w.lease.fence]], [sql.DELETE_LEASE_KEYS, [w.lease.fence]]);
          break;
        case 'set-expiry':
          statements.push([sql.SET_EXPIRY, [w.expiresAt, w.ttlMs, w.fence]]);
          break;
        case 'insert-waiter': {
          const q = w.waiter;
          statements.push([sql.INSERT_WAITER, [
            q.id, q.owner, q.requestId, JSON.stringify(q.resources), JSON.stringify(q.metadata), q.ttlMs, q.lockDelayMs,
            q.enqueuedAt, q.deadline, q.aliveUntil, q.waiterTtlMs,
          ]]);
          statements.push([sql.insertKeys('hf_waiter_keys', q.resources.length), q.resources.flatMap((r) => [r.key, rootOf(r.key)])]);
          break;
        }
        case 'touch-waiter':
          statements.push([sql.TOUCH_WAITER, [w.aliveUntil, w.seq]]);
          break;
        case 'delete-waiter':
          statements.push([sql.DELETE_WAITER, [w.seq]], [sql.DELETE_WAITER_KEYS, [w.seq]]);
          break;
        case 'insert-delay': {
          const d = w.delay;
          statements.push([sql.INSERT_DELAY, [d.root, d.key, d.fence, d.until, d.since, d.owner, JSON.stringify(d.metadata)]]);
          break;
        }
        case 'delete-delays':
          statements.push([sql.DELETE_DUE_DELAYS, [w.roots, w.now]]);
          break;
      }
    }
    const due = statements.length;
    if (readNextDue) statements.push([sql.NEXT_DUE, []]);
    statements.push([sql.COMMIT, []]);
    const results = await batch(connection, statements);
    const fences = new Map<number, number>();
    for (const { index, lease } of inserted) {
      const fence = Number((results[index] as ResultSetHeader).insertId);
      fences.set(lease.fence, fence);
      lease.fence = fence;
    }
    for (const change of result.changes) {
      if (change.fence !== null && change.fence < 0) change.fence = fences.get(change.fence) ?? change.fence;
    }
    return readNextDue ? nextDueOf(rows(results[due])[0]) : undefined;
  }
}
