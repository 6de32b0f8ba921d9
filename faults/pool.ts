/**
 * The worker processes, parent side: one slot per worker; a worker that dies (killed by a nemesis,
 * or on its own) is replaced by a fresh process under a new name (`w3.2@run`: slot 3, 2nd
 * process). Reads each worker's JSON lines, tracks what it is doing (for the nemeses' choice of
 * target), records every spawn and exit. `stop()` ends everything; `killAllSync()` is for exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clock, type ProcessEvent, type WorkerEvent } from './history.js';
import type { WorkerConfig } from './worker.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

export interface Slot {
  slot: number;
  gen: number;
  name: string;
  child: ChildProcess;
  /** `idle` (acquiring or between leases), `acquired` (holding, not written yet), `written`, `lost`. */
  phase: 'starting' | 'idle' | 'acquired' | 'written' | 'lost';
  paused: boolean;
  /** The harness is killing it: its exit is expected. */
  killing: boolean;
  stderr: string;
  exited: Promise<void>;
}

export interface PoolOptions {
  count: number;
  config(slot: number, gen: number, name: string): WorkerConfig;
  name(slot: number, gen: number): string;
  onEvent(event: WorkerEvent): void;
  onProcess(event: ProcessEvent): void;
}

export class WorkerPool {
  readonly slots: Slot[] = [];
  #running = true;
  readonly #options: PoolOptions;
  readonly #ready = new Map<string, () => void>();
  readonly #respawns = new Set<Promise<void>>();

  constructor(options: PoolOptions) {
    this.#options = options;
  }

  /** Starts every slot and waits until each worker has opened its store. */
  async start(timeoutMs = 60_000): Promise<void> {
    const ready = Array.from({ length: this.#options.count }, (_, slot) => this.#spawn(slot, 1));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`workers not ready after ${timeoutMs} ms:\n${this.slots.map((s) => s.stderr).join('\n')}`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.all(ready), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #spawn(slot: number, gen: number): Promise<void> {
    const name = this.#options.name(slot, gen);
    const child = spawn(process.execPath, ['--enable-source-maps', WORKER, JSON.stringify(this.#options.config(slot, gen, name))], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const ready = new Promise<void>((resolve) => this.#ready.set(name, resolve));
    let exit!: () => void;
    const state: Slot = { slot, gen, name, child, phase: 'starting', paused: false, killing: false, stderr: '', exited: new Promise((r) => (exit = r)) };
    this.slots[slot] = state;
    this.#options.onProcess({ t: clock(), type: 'spawn', w: name, pid: child.pid ?? -1 });
    child.stderr!.on('data', (chunk: Buffer) => (state.stderr = (state.stderr + chunk.toString()).slice(-4000)));
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let event: WorkerEvent;
      try {
        event = JSON.parse(line) as WorkerEvent;
      } catch {
        state.stderr += `\n[stdout] ${line}`;
        return;
      }
      this.#track(state, event);
      this.#options.onEvent(event);
    });
    // 'close' comes after the process exited and its stdout was read to the end.
    child.on('close', (code, signal) => {
      const expected = state.killing || !this.#running;
      const event: ProcessEvent = { t: clock(), type: 'exit', w: name, pid: child.pid ?? -1, code, signal, expected };
      if (state.stderr.trim() !== '') event.stderr = state.stderr;
      this.#options.onProcess(event);
      this.#ready.get(name)?.();
      exit();
      if (this.#running && this.slots[slot] === state) {
        const respawn = new Promise<void>((resolve) => setTimeout(resolve, 50)).then(() => {
          if (this.#running) void this.#spawn(slot, gen + 1);
        });
        this.#respawns.add(respawn);
        void respawn.finally(() => this.#respawns.delete(respawn));
      }
    });
    return ready;
  }

  #track(slot: Slot, event: WorkerEvent): void {
    if (event.type === 'ready') {
      slot.phase = 'idle';
      this.#ready.get(slot.name)?.();
    } else if (event.type === 'ok' && event.f === 'acquire') slot.phase = 'acquired';
    else if (event.type === 'invoke' && event.f === 'write') slot.phase = slot.phase === 'lost' ? 'lost' : 'written';
    else if (event.type === 'lost') slot.phase = 'lost';
    else if ((event.type === 'invoke' && event.f === 'release') || event.type === 'skip-release') slot.phase = 'idle';
  }

  alive(): Slot[] {
    return this.slots.filter((s) => s.child.exitCode === null && s.child.signalCode === null && !s.killing && s.phase !== 'starting');
  }

  kill(slot: Slot): void {
    slot.killing = true;
    if (slot.paused) this.resume(slot);
    slot.child.kill('SIGKILL');
  }

  pause(slot: Slot): void {
    slot.paused = true;
    slot.child.kill('SIGSTOP');
  }

  resume(slot: Slot): void {
    if (!slot.paused) return;
    slot.paused = false;
    slot.child.kill('SIGCONT');
  }

  /** Stops every worker: SIGCONT, SIGTERM (they release and exit), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#running = false;
    await Promise.allSettled([...this.#respawns]);
    const slots = this.slots.filter((s) => s.child.exitCode === null && s.child.signalCode === null);
    for (const slot of slots) {
      this.resume(slot);
      slot.child.kill('SIGTERM');
    }
    const timer = setTimeout(() => {
      for (const slot of slots) if (slot.child.exitCode === null && slot.child.signalCode === null) slot.child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(slots.map((s) => s.exited));
    clearTimeout(timer);
  }

  /** For process exit: nothing of ours survives the harness. */
  killAllSync(): void {
    this.#running = false;
    for (const slot of this.slots) {
      if (slot.child.exitCode !== null || slot.child.signalCode !== null) continue;
      slot.child.kill('SIGCONT');
      slot.child.kill('SIGKILL');
    }
  }
}
