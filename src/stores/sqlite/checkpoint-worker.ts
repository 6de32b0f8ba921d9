/**
 * The checkpointer's thread (see `checkpointer.ts`): its own connection to the database file,
 * which copies the write-ahead log back into the database (`PRAGMA wal_checkpoint(PASSIVE)`:
 * never waits for, nor blocks, the writers of any process) whenever the store's connections have
 * committed since its last checkpoint, checked every `intervalMs`.
 *
 * Inputs (`workerData`): `file`, `busyTimeoutMs`, `intervalMs`, `commits` (a shared Int32 counter
 * the store increments after each commit). Messages: `'stop'` closes the connection and ends the
 * thread. Outputs: none; a failed checkpoint is tried again at the next check (the log then only
 * grows until one succeeds), never thrown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface CheckpointWorkerData {
  file: string;
  busyTimeoutMs: number;
  intervalMs: number;
  commits: SharedArrayBuffer;
}

const data = workerData as CheckpointWorkerData;
const commits = new Int32Array(data.commits);
const db = new Database(data.file, { timeout: data.busyTimeoutMs, fileMustExist: true });
let seen = Atomics.load(commits, 0);

const timer = setInterval(() => {
  const now = Atomics.load(commits, 0);
  if (now === seen) return;
  seen = now;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
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
