/**
 * The etcd store under the fault harness: `--store etcd` starts a private, partitionable
 * 3-member cluster (test/stores/etcd/cluster.ts) and gives the cluster nemeses its members;
 * `--store etcd://...` uses a cluster as given, with the client nemeses only. Every run works
 * under a key prefix of its own.
 *
 *   kill-leader       SIGKILL the leader (asked of every member), restart it on its data after `ms`
 *   kill-member       SIGKILL a random member, restart it after `ms`
 *   pause-member      SIGSTOP a random member for `ms`, then SIGCONT
 *   partition-member  cut a random member's peer traffic both ways for `ms`, then heal
 */
import { EtcdCluster, type Member } from '../test/stores/etcd/cluster.js';
import type { ClusterNemesisName } from './history.js';
import type { MemberFaults, Stack, StackOptions } from './stack.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Store options of every worker: calls give up on a member quickly, operations within 5 s. */
const WORKER_OPTIONS = { requestTimeoutMs: 1000, operationTimeoutMs: 5000, historyLimit: 10_000_000 };

function memberFaults(cluster: EtcdCluster): MemberFaults {
  const pick = (random: () => number): Member => cluster.members[Math.floor(random() * cluster.members.length)]!;
  return {
    async fault(name: ClusterNemesisName, ms: number, random: () => number): Promise<string> {
      switch (name) {
        case 'kill-leader':
        case 'kill-member': {
          const target = name === 'kill-leader' ? await cluster.leader() : pick(random);
          if (target === null) return 'no leader to kill (an election under way)';
          await cluster.kill(target);
          await sleep(ms);
          const started = performance.now();
          await cluster.restart(target);
          return `SIGKILL ${target.name}${name === 'kill-leader' ? ' (leader)' : ''}, restarted after ${ms} ms (healthy ${Math.round(performance.now() - started)} ms later)`;
        }
        case 'pause-member': {
          const target = pick(random);
          cluster.pause(target);
          await sleep(ms);
          cluster.resume(target);
          return `SIGSTOP ${target.name} for ${ms} ms`;
        }
        case 'partition-member': {
          const target = pick(random);
          cluster.cut(target);
          await sleep(ms);
          cluster.heal(target);
          return `cut ${target.name} off from the other members for ${ms} ms`;
        }
      }
    },
  };
}

export async function etcdStack(url: string, options: StackOptions): Promise<Stack> {
  const prefix = `hf-faults-${options.runId}/`;
  const own = url.toLowerCase() === 'etcd' ? await EtcdCluster.start({ partitionable: true }) : null;
  const storeUrl = own?.url ?? url;
  const stack: Stack = {
    kind: 'etcd',
    url: storeUrl,
    describe: own ? `etcd private 3-member cluster ${storeUrl} (peer proxies), prefix ${prefix}` : `etcd ${storeUrl}, prefix ${prefix}`,
    storeOptions: () => ({ ...WORKER_OPTIONS, prefix }),
    restart: null,
    dropConnections: null,
    close: async () => {
      await own?.destroy();
    },
  };
  if (own) stack.members = memberFaults(own);
  return stack;
}
