/**
 * `holdfast serve` as a child process: it serves until SIGTERM, then exits 0 after a graceful
 * shutdown; env variables configure it; bad flags are one line plus the usage, exit 64; without
 * tokens it refuses a non-loopback address.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startCli, type CliProcess } from '../support/cli-process.js';

const dir = mkdtempSync(join(tmpdir(), 'holdfast-serve-'));

function holdfast(args: string[], env: Record<string, string> = {}): CliProcess {
  return startCli(args, env, dir);
}

async function servingUrl(stderr: () => string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const match = /serving (http:\/\/\S+) /.exec(stderr());
    if (match) return match[1]!;
    if (Date.now() > deadline) throw new Error(`the server did not start: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('holdfast serve', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('serves the API until SIGTERM, then shuts down gracefully with exit 0', async () => {
    const run = holdfast(['serve', '--store', 'memory:', '--port', '0', '--log-level', 'warn']);
    const url = await servingUrl(run.stderr);
    const acquired = await fetch(`${url}/v1/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'cli/serve', owner: 'me' }) });
    assert.equal(acquired.status, 201);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    run.child.kill('SIGTERM');
    const { code, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.match(stderr, /no tokens: loopback only/);
  });

  test('the default store is sqlite:./holdfast.db; env variables set store, port and tokens', async () => {
    const tokens = join(dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify([{ name: 'ops', token: 'ops-token-0123456789abcdef', admin: true }]));
    const run = holdfast(['serve'], { HOLDFAST_PORT: '0', HOLDFAST_TOKENS: tokens, HOLDFAST_LOG_LEVEL: 'silent' });
    const url = await servingUrl(run.stderr);
    assert.match(run.stderr(), /over sqlite:\.\/holdfast\.db/);
    assert.equal((await fetch(`${url}/v1/locks`)).status, 401);
    const ok = await fetch(`${url}/v1/locks`, { headers: { authorization: 'Bearer ops-token-0123456789abcdef' } });
    assert.equal(ok.status, 200);
    const info = (await (await fetch(`${url}/v1/info`)).json()) as { store: { kind: string; durable: boolean } };
    assert.deepEqual(info.store, { kind: 'sqlite', durable: true });
    run.child.kill('SIGINT');
    assert.equal((await run.done).code, 0);
  });

  test('bad flags: one line and the usage on stderr, exit 64', async () => {
    for (const args of [['serve', '--port', 'abc'], ['serve', '--bogus'], ['serve', 'extra'], ['serve', '--max-wait', 'forever']]) {
      const { code, stderr, stdout } = await holdfast(args).done;
      assert.equal(code, 64, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr.split('\n')[0]!, /^holdfast serve: /);
      assert.match(stderr, /Usage: holdfast serve/);
      assert.equal(stdout, '');
    }
    const unknown = await holdfast(['serv']).done;
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /unknown command "serv"/);
  });

  test('without tokens a non-loopback host is refused with a clear error', async () => {
    const { code, stderr } = await holdfast(['serve', '--store', 'memory:', '--host', '0.0.0.0', '--port', '0']).done;
    assert.equal(code, 64);
    assert.match(stderr, /refusing to listen on 0\.0\.0\.0 without tokens/);
  });

  test('--help prints the commands; serve --help its flags', async () => {
    const help = await holdfast(['--help']).done;
    assert.equal(help.code, 0);
    assert.match(help.stdout, /serve\s+serve the HTTP API and the dashboard/);
    const serveHelp = await holdfast(['serve', '--help']).done;
    assert.equal(serveHelp.code, 0);
    assert.match(serveHelp.stdout, /--tokens FILE/);
  });
});
