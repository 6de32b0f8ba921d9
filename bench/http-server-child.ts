/**
 * Spawned by the `http` suite (`node http-server-child.js holdfast|bare`): serves a memory store
 * with holdfast's server, or the bare Fastify + Map anchor (bare-http-lock.ts), in a process of
 * its own, so the suite can read the server's own CPU per request. Protocol over the IPC channel:
 * it sends its URL; `'start'` resets its CPU clock; `'stop'` answers `{ cpuMicros }` (user +
 * system since `'start'`) and exits.
 */
import { openLocks, startServer } from '../src/index.js';
import { startBareLockServer } from './bare-http-lock.js';

const which = process.argv[2];
let close: () => Promise<void>;
if (which === 'bare') {
  const bare = await startBareLockServer();
  close = () => bare.close();
  process.send!(bare.url);
} else {
  const direct = await openLocks('memory:', { owner: 'bench' });
  const server = await startServer({ store: direct.store, port: 0, logLevel: 'silent', signals: [] });
  close = async () => {
    await server.close();
    await direct.close();
  };
  process.send!(server.url);
}
let since = process.cpuUsage();
process.on('message', (message) => {
  if (message === 'start') {
    since = process.cpuUsage();
    return;
  }
  const used = process.cpuUsage(since);
  process.send!({ cpuMicros: used.user + used.system }, () => {
    void close().then(() => process.exit(0));
  });
});
