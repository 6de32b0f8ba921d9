/**
 * Starts a private 3-member etcd cluster and prints its `etcd://` URL on the first line of
 * stdout; runs until SIGINT or SIGTERM, then stops the members and deletes their data.
 *   node dist/test/stores/etcd/serve.js
 *   HOLDFAST_CONFORMANCE_STORES=<url> node scripts/run-tests.mjs conformance
 */
import { EtcdCluster } from './cluster.js';

const cluster = await EtcdCluster.start();
process.stdout.write(`${cluster.url}\n`);
const stop = (): void => {
  void cluster.destroy().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
setInterval(() => {}, 1 << 30);
