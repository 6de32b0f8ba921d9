/**
 * The checkpointer's thread (see `checkpointer.ts`): its own connection to the database file,
 * which copies the write-ahead log back into the database whenever the store's connections have
 * committed since its last checkpoint, checked every `intervalMs`.
 *
 * Each check runs `PRAGMA wal_checkpoint(PASSIVE)`, which never waits for, nor blocks, the writers
 * of any process. That alone does not bound the log: SQLite starts the log over only when a write
 * transaction begins while every frame of it is back in the database, which under a steady stream
 * of writes (new frames appended while the checkpoint copies the old ones) never happens, and the
 * file grew by ~40 KiB a lock pair (910 MB after 21,000 pairs; every append then extended the
 * file: new blocks, zeroed pages, a costlier sync). So once the log holds `restartFrames` frames
 * the check follows the passive checkpoint with `wal_checkpoint(RESTART)`: it takes the write lock
 * for as long as it copies the few frames written since and waits for readers to leave the log,
 * so that the next writer starts the log over (same file, pages already allocated). That wait is
 * bounded by `RESTART_WAIT_MS` (the connection's busy timeout during the call): if a writer or a
 * reader of any process is still busy then, the restart is given up and tried at the next check.
 *
 * Inputs (`workerData`): `file`, `busyTimeoutMs`, `intervalMs`, `restartFrames`, `commits` (a
 * shared Int32 counter the store increments after each commit). Messages: `'stop'` closes the
 * connection and ends the thread. Outputs: none; a failed checkpoint is tried again at the next
 * check (the log then only grows until one succeeds), never thrown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface CheckpointWorkerData {
  file: string;
  busyTimeoutMs: number;
  intervalMs: number;
  restartFrames: number;
  commits: SharedArrayBuffer;
}

/** What `PRAGMA wal_checkpoint` answers: frames in the log, and how many are back in the database. */
interface CheckpointRow {
  busy: number;
  log: number;
  checkpointed: number;
}

/**
 * How long a restarting checkpoint may wait for the write lock, and then for readers to leave the
 * log. Writers wait for it meanwhile: that long, plus copying the frames written since the passive
 * checkpoint and syncing them.
 */
const RESTART_WAIT_MS = 10;

const data = workerData as CheckpointWorkerData;
const commits = new Int32Array(data.commits);
const db = new Database(data.file, { timeout: data.busyTimeoutMs, fileMustExist: true });
let seen = Atomics.load(commits, 0);

function checkpoint(): void {
  const [passive] = db.pragma('wal_checkpoint(PASSIVE)') as CheckpointRow[];
  if (passive === undefined || passive.log < data.restartFrames) return;
  db.pragma(`busy_timeout = ${RESTART_WAIT_MS}`);
  try {
    db.pragma('wal_checkpoint(RESTART)');
  } finally {
    db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
  }
}

const timer = setInterval(() => {
  const now = Atomics.load(commits, 0);
  if (now === seen) return;
  seen = now;
  try {
    checkpoint();
  } catch {
    // Busy or failed: the next check tries again.
  }
}, data.intervalMs);

parentPort?.on('message', (message: unknown) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  try {
    db.close();
  } finally {
    parentPort?.close();
  }
});
