/**
 * The nemeses: every `intervalMs` (jittered) one of the enabled faults, chosen by the seeded PRNG.
 *
 *   kill              SIGKILL a worker that holds a lease (any worker if none does); the pool
 *                     starts a fresh one in its slot.
 *   pause             SIGSTOP a holder, preferably one that has acquired but not written yet, for
 *                     TTL + 0.3..1.5 s, then SIGCONT: its lease expires meanwhile and another worker
 *                     may take the key and write; on waking it still writes (the GC-pause case).
 *   restart-store     sqlite: SIGKILL 1..n/2 workers at once, mid-transaction for any that were in
 *                     one (every process holding the file), then fresh ones; postgres: restart the
 *                     private cluster (immediate); http: SIGKILL and restart the server.
 *   pause-store       redis: SIGSTOP the store's server, or CLIENT PAUSE it, for 1..3 s.
 *   drop-connections  pg_terminate_backend of every store connection of the run, or of one worker.
 *   kill-leader       etcd: SIGKILL the cluster's leader; restarted on its data 1..3 s later.
 *   kill-member       etcd: SIGKILL a random member; restarted 1..3 s later.
 *   pause-member      etcd: SIGSTOP a random member (the leader, sometimes) for 1..3 s.
 *   partition-member  etcd: cut a random member off from the others (its peer traffic, both ways,
 *                     through the harness's peer proxies) for 1..3 s; its clients must move on.
 */
import { between, clock, CLUSTER_NEMESES, pick, type ClusterNemesisName, type NemesisEvent, type NemesisName } from './history.js';
import type { Slot, WorkerPool } from './pool.js';
import type { Stack } from './stack.js';

export interface NemesisOptions {
  names: readonly NemesisName[];
  pool: WorkerPool;
  stack: Stack;
  random: () => number;
  ttlMs: number;
  intervalMs: number;
  record(event: NemesisEvent): void;
}

/** The nemeses that apply to a store stack (drop-connections needs Postgres connections, the cluster nemeses a cluster). */
export function applicable(names: readonly NemesisName[], stack: Stack): { use: NemesisName[]; skipped: string[] } {
  const use: NemesisName[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    if (name === 'drop-connections' && stack.dropConnections === null) skipped.push(`drop-connections (no database connections on ${stack.kind}${stack.kind === 'http' ? ' over sqlite' : ''})`);
    else if (CLUSTER_NEMESES.includes(name as ClusterNemesisName) && !stack.members) skipped.push(`${name} (no cluster of the harness on ${stack.kind})`);
    else if (name === 'pause-store' && !stack.pause) skipped.push(`pause-store (the harness can't pause the ${stack.kind} store)`);
    else if (name === 'restart-store' && stack.kind === 'etcd') skipped.push('restart-store (etcd: the cluster nemeses take members down instead)');
    else use.push(name);
  }
  return { use, skipped };
}

export class Nemesis {
  readonly #o: NemesisOptions;
  readonly #pauses = new Map<Slot, { timer: NodeJS.Timeout; event: NemesisEvent }>();
  #busy: Promise<void> = Promise.resolve();

  constructor(options: NemesisOptions) {
    this.#o = options;
  }

  /** Injects faults until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { random, intervalMs, names } = this.#o;
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const delay = names.length === 0 ? 2 ** 31 - 1 : between(random, Math.round(intervalMs / 2), Math.round(intervalMs * 1.5));
        const wake = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        const timer = setTimeout(wake, delay);
        signal.addEventListener('abort', wake);
      });
      if (signal.aborted) break;
      this.#busy = this.#inject(pick(random, names));
      await this.#busy;
    }
  }

  async #inject(name: NemesisName): Promise<void> {
    const { pool, random, stack } = this.#o;
    const t = clock();
    const free = pool.alive().filter((s) => !s.paused);
    const holders = free.filter((s) => s.phase === 'acquired' || s.phase === 'written');
    const done = (targets: string[], detail: string): void => this.#o.record({ t, end: clock(), nemesis: name, targets, detail });
    switch (name) {
      case 'kill': {
        const target = holders.length > 0 ? pick(random, holders) : free.length > 0 ? pick(random, free) : null;
        if (target === null) return;
        const detail = `SIGKILL pid ${target.child.pid} (${target.phase})`;
        pool.kill(target);
        done([target.name], detail);
        return;
      }
      case 'pause': {
        const fresh = holders.filter((s) => s.phase === 'acquired');
        const target = fresh.length > 0 ? pick(random, fresh) : holders.length > 0 ? pick(random, holders) : null;
        if (target === null) return;
        const ms = this.#o.ttlMs + between(random, 300, 1500);
        const event: NemesisEvent = { t, end: t + ms, nemesis: 'pause', targets: [target.name], detail: `SIGSTOP pid ${target.child.pid} (${target.phase}) for ${ms} ms` };
        pool.pause(target);
        const timer = setTimeout(() => this.#resume(target), ms);
        this.#pauses.set(target, { timer, event });
        return;
      }
      case 'restart-store': {
        if (stack.restart !== null) {
          try {
            done([], await stack.restart());
          } catch (error) {
            done([], `restart failed: ${error instanceof Error ? error.message : String(error)}`);
            throw error;
          }
          return;
        }
        // sqlite: kill every process holding the file mid-transaction = SIGKILL a batch of workers.
        const batch = free.filter(() => random() < 0.5).slice(0, Math.max(1, Math.ceil(free.length / 2)));
        if (batch.length === 0 && free.length > 0) batch.push(pick(random, free));
        for (const slot of batch) pool.kill(slot);
        done(batch.map((s) => s.name), `SIGKILL ${batch.length} of ${free.length} workers at once`);
        return;
      }
      case 'kill-leader':
      case 'kill-member':
      case 'pause-member':
      case 'partition-member': {
        if (!stack.members) return;
        // The member comes back (restarted, resumed, healed) after 1..3 s; the fault's end is then.
        done([], await stack.members.fault(name, between(random, 1000, 3000), random));
        return;
      }
      case 'pause-store': {
        if (!stack.pause) return;
        done([], await stack.pause(between(random, 1000, 3000)));
        return;
      }
      case 'drop-connections': {
        if (stack.dropConnections === null) return;
        const one = random() < 0.5 && free.length > 0 ? pick(random, free) : null;
        done(one ? [one.name] : [], await stack.dropConnections(one?.name ?? null));
        return;
      }
    }
  }

  #resume(slot: Slot): void {
    const pause = this.#pauses.get(slot);
    if (!pause) return;
    clearTimeout(pause.timer);
    this.#pauses.delete(slot);
    this.#o.pool.resume(slot);
    pause.event.end = clock();
    this.#o.record(pause.event);
  }

  /** Ends the faults in progress: resumes paused workers, waits for a restart under way. */
  async finish(): Promise<void> {
    await this.#busy.catch(() => {});
    for (const slot of [...this.#pauses.keys()]) this.#resume(slot);
  }
}
