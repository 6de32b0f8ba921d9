/**
 * The `holdfast` binary against a holdfast server (`--server URL`, `HOLDFAST_SERVER`, token from
 * `HOLDFAST_TOKEN`): run under a lock, busy exit 75, ls, acquire/release, and `events` following
 * the server's stream.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openLocks, startServer, type Locks, type RunningServer } from '../../src/index.js';
import { startCli, type CliProcess } from '../support/cli-process.js';

const TOKEN = 'cli-test-token-0123456789';

function holdfast(args: string[], env: Record<string, string>): CliProcess {
  return startCli(args, env);
}

describe('holdfast CLI through a server', () => {
  let server: RunningServer;
  let locks: Locks;
  let env: Record<string, string>;
  before(async () => {
    server = await startServer({
      store: 'memory:', port: 0, logLevel: 'silent', signals: [],
      tokens: [{ name: 'ops', token: TOKEN, owners: '*', admin: true }],
    });
    env = { HOLDFAST_SERVER: server.url, HOLDFAST_TOKEN: TOKEN };
    locks = await openLocks(server.url, { owner: 'test', storeOptions: { token: TOKEN } });
  });
  after(async () => {
    await locks.close();
    await server.close();
  });

  test('run holds the lock on the server while the child runs', async () => {
    const script = 'console.log(process.env.HOLDFAST_FENCE)';
    const out = await holdfast(['run', 'srv/job', '--owner', 'cli', '--', process.execPath, '-e', script], env).done;
    assert.equal(out.code, 0, out.stderr);
    assert.ok(Number(out.stdout.trim()) >= 1);
    assert.deepEqual((await locks.history({ key: 'srv/job' })).map((e) => [e.type, e.owner]), [['released', 'cli'], ['acquired', 'cli']]);
  });

  test('busy through the server exits 75 with the holder; a bad token is refused', async () => {
    const lease = await locks.acquire('srv/busy', { metadata: { message: 'deploying' } });
    try {
      const busy = await holdfast(['run', 'srv/busy', '--', 'true'], env).done;
      assert.equal(busy.code, 75);
      assert.match(busy.stderr, /held by owner "test".*deploying/);
      const denied = await holdfast(['ls', '--server', server.url], { ...env, HOLDFAST_TOKEN: 'wrong-token-0123456789' }).done;
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /UNAUTHORIZED/);
    } finally {
      await lease.release();
    }
  });

  test('acquire, ls and release by id through the server', async () => {
    const acquired = await holdfast(['acquire', 'srv/doc', '--owner', 'script', '--ttl', '1m', '--json'], env).done;
    assert.equal(acquired.code, 0, acquired.stderr);
    const lease = JSON.parse(acquired.stdout) as { id: string; fence: number };
    const ls = await holdfast(['ls', 'srv/'], env).done;
    assert.match(ls.stdout, new RegExp(`srv/doc\\s+exclusive\\s+script\\s+${lease.fence}`));
    assert.equal((await holdfast(['release', lease.id], env).done).stdout, 'released\n');
  });

  test('events follows the server stream', async () => {
    const follower = holdfast(['events'], env);
    try {
      const deadline = Date.now() + 10_000;
      // Keep producing events until the follower has printed one for our key.
      while (!/acquired\s+srv\/events/.test(follower.stdout())) {
        if (Date.now() > deadline) throw new Error(`no event seen; got ${JSON.stringify(follower.stdout())}`);
        const lease = await locks.acquire('srv/events');
        await lease.release();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.match(follower.stdout(), /released\s+srv\/events\s+owner test fence \d+/);
    } finally {
      follower.child.kill('SIGINT');
      const end = await follower.done;
      assert.equal(end.code, 0);
    }
  });
});
