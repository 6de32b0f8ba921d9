/**
 * A private etcd cluster for tests, the conformance backend, the fault harness and the benchmark:
 * `size` members (3 by default) of the machine's `etcd` binary on free ports of 127.0.0.1, data
 * dirs in a temp dir (under /dev/shm when it exists, so fsync is cheap), started as child
 * processes. Members can be killed (SIGKILL), paused (SIGSTOP), resumed and restarted, and (with
 * `partitionable`) cut off from the others and healed, so tests and nemeses can take the leader away. `destroy()` kills every member and deletes the dir; a
 * process that exits without calling it still kills them (synchronously, on 'exit').
 *
 * Flags that holdfast needs from a deployment are set here as a deployment would set them
 * (docs/etcd.md): `--max-txn-ops 4096` (one operation is one transaction) and revision-based
 * auto-compaction (every operation writes, so the key history grows).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../postgres/cluster.js';
import { PeerProxy } from './peer-proxy.js';

export const ETCD_BIN = process.env['HOLDFAST_TEST_ETCD_BIN'] ?? '/usr/bin/etcd';

export interface Member {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** The peer port the other members dial: the member's proxy when the cluster is partitionable. */
  readonly advertisedPeerPort: number;
  readonly dataDir: string;
  /** The member's raft id in hex (as etcd's X-Server-From header names it), once known. */
  id: string | null;
  process: ChildProcess | null;
  /** The last lines the member wrote (for failure messages). */
  log: string[];
}

export interface ClusterOptions {
  /** @default 3 */
  size?: number;
  /** Raft heartbeat interval, ms. @default 50 */
  heartbeatMs?: number;
  /** Raft election timeout, ms. @default 500 */
  electionMs?: number;
  /**
   * Put every member's peer port behind a proxy of this process (peer-proxy.ts), so `cut()` can
   * partition a member off. Costs a userspace hop on every raft message. @default false
   */
  partitionable?: boolean;
}

export const CLUSTER_DEFAULTS = Object.freeze({ size: 3, heartbeatMs: 50, electionMs: 500, partitionable: false });

/** Why a private cluster cannot be made here, or null when it can. */
export function clusterUnavailable(): string | null {
  return existsSync(ETCD_BIN) ? null : `${ETCD_BIN} does not exist (apt-get install etcd-server, or set HOLDFAST_TEST_ETCD_BIN)`;
}

async function healthy(port: number, signal: AbortSignal): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal });
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

export class EtcdCluster {
  readonly dir: string;
  readonly members: Member[] = [];
  readonly #options: Required<ClusterOptions>;
  readonly #proxies: PeerProxy[] = [];
  /** Members cut off from the others (partitionable clusters). */
  readonly #cut = new Set<Member>();
  #killOnExit = (): void => {
    for (const m of this.members) m.process?.kill('SIGKILL');
  };

  private constructor(options: Required<ClusterOptions>) {
    this.#options = options;
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    this.dir = mkdtempSync(join(base, 'holdfast-etcd-'));
  }

  /**
   * Starts a new cluster and waits until every member is healthy (a leader is elected). A port
   * picked free can be taken before etcd binds it (test files start clusters in parallel, and
   * outgoing connections use the same range): then it starts again on new ports, up to 3 times.
   */
  static async start(options: ClusterOptions = {}): Promise<EtcdCluster> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await EtcdCluster.#startOnce(options);
      } catch (error) {
        if (attempt >= 3 || !/address already in use/.test(error instanceof Error ? error.message : String(error))) throw error;
      }
    }
  }

  static async #startOnce(options: ClusterOptions): Promise<EtcdCluster> {
    const unavailable = clusterUnavailable();
    if (unavailable !== null) throw new Error(`no etcd cluster: ${unavailable}`);
    const cluster = new EtcdCluster({ ...CLUSTER_DEFAULTS, ...options });
    process.once('exit', cluster.#killOnExit);
    try {
      for (let i = 0; i < cluster.#options.size; i++) {
        const name = `m${i}`;
        const peerPort = await freePort();
        const advertisedPeerPort = cluster.#options.partitionable ? await freePort() : peerPort;
        cluster.members.push({ name, clientPort: await freePort(), peerPort, advertisedPeerPort, dataDir: join(cluster.dir, name), id: null, process: null, log: [] });
      }
      if (cluster.#options.partitionable) {
        for (const m of cluster.members) {
          cluster.#proxies.push(await PeerProxy.start(m.advertisedPeerPort, m.peerPort, (sender) => cluster.#refuses(m, sender)));
        }
      }
      for (const m of cluster.members) cluster.#spawn(m, 'new');
      await cluster.waitHealthy(30_000);
      await cluster.#readIds();
      return cluster;
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
  }

  /** `etcd://127.0.0.1:A,127.0.0.1:B,...` for every member. */
  get url(): string {
    return `etcd://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(',')}`;
  }

  /** `http://127.0.0.1:PORT` of each member (for etcdctl and raw calls). */
  get endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  #spawn(m: Member, state: 'new' | 'existing'): void {
    const initialCluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.advertisedPeerPort}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.advertisedPeerPort}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', this.dir,
      '--heartbeat-interval', String(this.#options.heartbeatMs),
      '--election-timeout', String(this.#options.electionMs),
      '--max-txn-ops', '4096',
      '--auto-compaction-mode', 'revision',
      '--auto-compaction-retention', '100000',
      '--log-level', 'warn',
      '--logger', 'zap',
    ];
    const child = spawn(ETCD_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    m.process = child;
    m.log = [];
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      m.log.push(...chunk.split('\n').filter(Boolean));
      if (m.log.length > 40) m.log.splice(0, m.log.length - 40);
    });
    child.once('exit', () => {
      if (m.process === child) m.process = null;
    });
    // The members must not keep a test process alive on their own.
    child.unref();
    (child.stderr as Socket | null)?.unref();
  }

  /** Waits until every running member answers /health with true. */
  async waitHealthy(timeoutMs = 30_000, members: Member[] = this.members.filter((m) => m.process !== null)): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      for (;;) {
        if (m.process === null) throw new Error(`etcd member ${m.name} exited:\n${m.log.join('\n')}`);
        if (await healthy(m.clientPort, AbortSignal.timeout(1000))) break;
        if (Date.now() > deadline) throw new Error(`etcd member ${m.name} not healthy after ${timeoutMs} ms:\n${m.log.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** The member that is leader now (asks each running member's status), or null during an election. */
  async leader(): Promise<Member | null> {
    for (const m of this.members) {
      if (m.process === null) continue;
      try {
        const response = await fetch(`http://127.0.0.1:${m.clientPort}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
        const body = (await response.json()) as { header?: { member_id?: string }; leader?: string };
        if (body.leader !== undefined && body.leader === body.header?.member_id) return m;
      } catch {
        // Not answering: not the leader we can use.
      }
    }
    return null;
  }

  /** SIGKILLs a member and waits until it has exited. */
  async kill(m: Member): Promise<void> {
    const child = m.process;
    if (child === null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Waiting for the exit keeps the process alive (the member is unref'd otherwise).
    child.ref();
    if (child.signalCode === null && child.exitCode === null) child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  pause(m: Member): void {
    m.process?.kill('SIGSTOP');
  }

  resume(m: Member): void {
    m.process?.kill('SIGCONT');
  }

  /** Starts a killed member again on its data dir and waits until it is healthy. */
  async restart(m: Member): Promise<void> {
    if (m.process !== null) return;
    this.#spawn(m, 'existing');
    await this.waitHealthy(30_000, [m]);
  }

  /** Learns each member's raft id (for the proxies, which see senders by id). */
  async #readIds(): Promise<void> {
    const answer = await fetch(`${this.endpoints[0]}/v3/cluster/member/list`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(5000) });
    const body = (await answer.json()) as { members?: Array<{ ID?: string; name?: string }> };
    for (const entry of body.members ?? []) {
      const m = this.members.find((x) => x.name === entry.name);
      if (m && entry.ID !== undefined) m.id = BigInt(entry.ID).toString(16);
    }
  }

  #refuses(target: Member, sender: string | null): boolean {
    if (this.#cut.has(target)) return true;
    return sender !== null && [...this.#cut].some((m) => m.id === sender);
  }

  /** Partitions `m` off from the other members (partitionable clusters only): see peer-proxy.ts. */
  cut(m: Member): void {
    if (!this.#options.partitionable) throw new Error('cut() needs a cluster started with partitionable: true');
    this.#cut.add(m);
    for (const proxy of this.#proxies) proxy.enforce();
  }

  /** Ends the partition of `m`. */
  heal(m: Member): void {
    this.#cut.delete(m);
  }

  async destroy(): Promise<void> {
    this.#cut.clear();
    await Promise.all(this.#proxies.splice(0).map((p) => p.close()));
    await Promise.all(this.members.map((m) => this.kill(m)));
    process.removeListener('exit', this.#killOnExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
