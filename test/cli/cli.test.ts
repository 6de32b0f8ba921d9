/**
 * The real `holdfast` binary as a child process, against a SQLite file shared with the test:
 * run under a lock, exit codes (child's, 75 busy, 64 usage, 70 lost), serialization of two runs,
 * signal forwarding, acquire/renew/release for scripts, ls and history output.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openLocks, type Locks } from '../../src/index.js';

const BIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'holdfast-cli-'));
const store = `sqlite:${join(dir, 'locks.db')}`;

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function holdfast(args: string[], options: { onSpawn?: (pid: number) => void } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, HOLDFAST_STORE: store, HOLDFAST_SERVER: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('spawn', () => options.onSpawn?.(child.pid!));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const node = (script: string): string[] => [process.execPath, '-e', script];

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('holdfast CLI', () => {
  let locks: Locks;
  before(async () => {
    locks = await openLocks(store, { owner: 'test' });
  });
  after(async () => {
    await locks.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('run holds the lock while the child runs, exports the lease, exits with its code', async () => {
    const out = await holdfast(['run', 'jobs/a', '--owner', 'cli-a', '--', ...node(
      'console.log(JSON.stringify({ id: process.env.HOLDFAST_LEASE_ID, fence: process.env.HOLDFAST_FENCE, keys: process.env.HOLDFAST_KEYS })); process.exit(3)',
    )]);
    assert.equal(out.code, 3, out.stderr);
    const seen = JSON.parse(out.stdout) as { id: string; fence: string; keys: string };
    assert.match(seen.id, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(Number(seen.fence) >= 1);
    assert.equal(seen.keys, 'jobs/a');
    assert.deepEqual((await locks.list({ prefix: 'jobs/a' })).locks, [], 'released after the child exits');
    const history = await locks.history({ key: 'jobs/a', limit: 2 });
    assert.deepEqual(history.map((e) => e.type), ['released', 'acquired']);
  });

  test('busy: prints who holds the key and exits 75', async () => {
    const lease = await locks.acquire('jobs/busy', { metadata: { message: 'nightly backup' } });
    try {
      const out = await holdfast(['run', 'jobs/busy', '--', 'true']);
      assert.equal(out.code, 75);
      assert.match(out.stderr, /LOCK_BUSY: "jobs\/busy" is held by owner "test" \(exclusive\) since .*expires in \d+ s: nightly backup/);
      const timedOut = await holdfast(['run', 'jobs/busy', '--wait', '300ms', '--', 'true']);
      assert.equal(timedOut.code, 75);
      assert.match(timedOut.stderr, /WAIT_TIMEOUT/);
    } finally {
      await lease.release();
    }
  });

  test('bad flags and durations: one line and the usage, exit 64', async () => {
    for (const args of [
      ['run', 'k', '--ttl', '5x', '--', 'true'],
      ['run', 'k', '--bogus', '--', 'true'],
      ['run', 'k', 'true'],
      ['run', '--', 'true'],
      ['nosuchcommand'],
      ['acquire', 'k', '--limit', '2'],
    ]) {
      const out = await holdfast(args);
      assert.equal(out.code, 64, `${args.join(' ')}: ${out.stderr}`);
      assert.match(out.stderr, /^holdfast( [a-z-]+)?: .+\n/);
      assert.match(out.stderr, /Usage: holdfast/);
    }
  });

  test('two runs on one key take turns', async () => {
    const log = join(dir, 'turns.log');
    const script = `const fs=require('fs');fs.appendFileSync(${JSON.stringify(log)},'start '+process.env.HOLDFAST_FENCE+'\\n');setTimeout(()=>{fs.appendFileSync(${JSON.stringify(log)},'end '+process.env.HOLDFAST_FENCE+'\\n')},300)`;
    const runs = await Promise.all([1, 2, 3].map(() => holdfast(['run', 'jobs/turns', '--wait', '20s', '--', ...node(script)])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(lines.length, 6);
    for (let i = 0; i < lines.length; i += 2) {
      const [start, fence] = lines[i]!.split(' ');
      assert.equal(start, 'start');
      assert.equal(lines[i + 1], `end ${fence}`, `no overlap: ${lines.join(' | ')}`);
    }
  });

  test('a lost lease stops the child and exits 70', async () => {
    const started = Date.now();
    const run = holdfast(['run', 'jobs/lost', '--ttl', '1s', '--kill-after', '1s', '--', ...node('setInterval(() => {}, 1000)')]);
    await eventually(async () => (await locks.list({ prefix: 'jobs/lost' })).locks.length === 1);
    assert.equal(await locks.forceRelease('jobs/lost'), 1);
    const out = await run;
    assert.equal(out.code, 70, out.stderr);
    assert.match(out.stderr, /lost the lock on jobs\/lost/);
    assert.ok(Date.now() - started < 15_000);
  });

  test('SIGTERM is forwarded to the child', async () => {
    const marker = join(dir, 'got-term');
    const ready = join(dir, 'term-handler-ready');
    let pid = 0;
    const run = holdfast(['run', 'jobs/signal', '--', ...node(
      `process.on('SIGTERM', () => { require('fs').writeFileSync(${JSON.stringify(marker)}, 'x'); process.exit(0); }); require('fs').writeFileSync(${JSON.stringify(ready)}, 'x'); setInterval(() => {}, 1000)`,
    )], { onSpawn: (p) => (pid = p) });
    await eventually(async () => (await locks.list({ prefix: 'jobs/signal' })).locks.length === 1);
    // The child's handler is installed (on a loaded machine node may take longer than a fixed pause to start).
    await eventually(async () => existsSync(ready));
    process.kill(pid, 'SIGTERM');
    const out = await run;
    assert.ok(existsSync(marker), 'the child got SIGTERM');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual((await locks.list({ prefix: 'jobs/signal' })).locks, []);
  });

  test('acquire, ls, renew, release for scripts; release-owner; history', async () => {
    const acquired = await holdfast(['acquire', 'lb/SITEB-CLS-CLOUD-01', '--owner', 'inventory', '--ttl', '10m', '--message', 'data collection']);
    assert.equal(acquired.code, 0, acquired.stderr);
    const [id, fence] = acquired.stdout.trim().split(' ');
    assert.ok(id && Number(fence) > 0);

    const ls = await holdfast(['ls']);
    assert.equal(ls.code, 0);
    assert.match(ls.stdout, /KEY\s+MODE\s+OWNER\s+FENCE\s+EXPIRES IN\s+MESSAGE/);
    assert.match(ls.stdout, new RegExp(`lb/SITEB-CLS-CLOUD-01\\s+exclusive\\s+inventory\\s+${fence}\\s+(599|600|10) (s|min)\\s+data collection`));
    const json = JSON.parse((await holdfast(['ls', 'lb/', '--json'])).stdout) as { locks: Array<{ owner: string }> };
    assert.equal(json.locks[0]?.owner, 'inventory');

    const renewed = await holdfast(['renew', id!, '--ttl', '20m']);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stdout, /renewed until \d{4}-/);

    assert.equal((await holdfast(['release', id!])).stdout, 'released\n');
    const again = await holdfast(['release', id!]);
    assert.equal(again.code, 1);
    assert.equal(again.stdout, 'not held\n');
    const lost = await holdfast(['renew', id!]);
    assert.equal(lost.code, 1);
    assert.match(lost.stderr, /LEASE_LOST/);

    await holdfast(['acquire', 'tasks/1', '--owner', 'task-9']);
    await holdfast(['acquire', 'tasks/2', '--owner', 'task-9']);
    const cleaned = await holdfast(['release-owner', 'task-9']);
    assert.equal(cleaned.stdout, 'released 2\n');

    const history = await holdfast(['history', '--owner', 'task-9']);
    assert.match(history.stdout, /released\s+tasks\/2\s+task-9/);
    assert.match(history.stdout, /acquired\s+tasks\/1\s+task-9/);
  });

  test('--help lists the commands; COMMAND --help shows examples', async () => {
    const help = await holdfast(['--help']);
    assert.equal(help.code, 0);
    for (const name of ['serve', 'run', 'acquire', 'renew', 'release', 'release-owner', 'force-release', 'ls', 'history', 'events']) {
      assert.match(help.stdout, new RegExp(`\\n  ${name}\\s`), name);
    }
    const run = await holdfast(['run', '--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /Examples:\n  holdfast run/);
  });
});
