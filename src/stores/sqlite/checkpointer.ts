/**
 * Checkpoints of a `sqlite:` file off the callers' path. SQLite's own automatic checkpoint runs
 * inside the commit that pushes the write-ahead log past 1000 pages, so every few dozen lock
 * operations one caller waited 2–13 ms for it (issue 17). Each store connection therefore turns
 * it off (`wal_autocheckpoint = 0`) and one thread per file and process (`checkpoint-worker.ts`)
 * checkpoints on its own connection shortly after commits (PASSIVE: it neither waits for nor
 * blocks writers), and makes the next writer start the log over once it holds `RESTART_FRAMES`.
 *
 * The store counts its commits in a shared counter (an atomic add, no message). Should the thread
 * fail to start or die, `failed` says so and the store hands checkpoints back to SQLite.
 */
import { Worker } from 'node:worker_threads';

/** How often the thread looks at the commit counter. */
const CHECK_INTERVAL_MS = 20;
/**
 * Frames (pages) in the log past which the thread makes the next writer start it over
 * (`checkpoint-worker.ts`): 4096 frames, a log of about 16 MiB at most with 4 KiB pages.
 */
const RESTART_FRAMES = 4096;
/** How long `stop` waits for the thread to close its connection before terminating it. */
const STOP_WAIT_MS = 2000;

export class Checkpointer {
  readonly #worker: Worker;
  readonly #commits: Int32Array;
  #failed = false;
  #exited: Promise<void>;

  constructor(file: string, busyTimeoutMs: number) {
    const buffer = new SharedArrayBuffer(4);
    this.#commits = new Int32Array(buffer);
    this.#worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
      workerData: { file, busyTimeoutMs, intervalMs: CHECK_INTERVAL_MS, restartFrames: RESTART_FRAMES, commits: buffer },
    });
    this.#worker.unref();
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.once('error', () => {
      this.#failed = true;
    });
  }

  /** A connection of this process committed to the file. */
  committed(): void {
    Atomics.add(this.#commits, 0, 1);
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Closes the thread's connection and ends the thread. */
  async stop(): Promise<void> {
    // Kept alive until the thread has ended (it is unref'd while it runs).
    this.#worker.ref();
    this.#worker.postMessage('stop');
    const timer = setTimeout(() => void this.#worker.terminate(), STOP_WAIT_MS);
    timer.unref();
    await this.#exited;
    clearTimeout(timer);
  }
}
