/**
 * The Python client's tests (`clients/python/tests`, `unittest`) as part of `npm test`, one node
 * test per Python test module, run side by side (they mostly wait on servers). They start their
 * own `holdfast serve` processes from this build (`dist/src/cli/main.js`, run by this node). A node
 * test fails when its unittest run fails, and when a process the run started is left behind (each
 * run is its own process group, checked empty afterwards). The interpreter is `HOLDFAST_PYTHON`
 * (default `python3`, 3.9 or newer); a missing one fails the tests, never skips them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

const PYTHON_DIR = fileURLToPath(new URL('../../../clients/python/', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PYTHON = process.env['HOLDFAST_PYTHON'] || 'python3';
const MODULES = readdirSync(join(PYTHON_DIR, 'tests'))
  .filter((name) => /^test_\w+\.py$/.test(name))
  .map((name) => `tests.${name.slice(0, -3)}`)
  .sort();

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  pid: number;
}

function unittest(module: string): Promise<Ran> {
  const child = spawn(PYTHON, ['-m', 'unittest', '-v', module], {
    cwd: PYTHON_DIR,
    env: { ...process.env, HOLDFAST_CLI: CLI, HOLDFAST_NODE: process.execPath, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so what it leaves behind can be found.
    detached: true,
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', (error) => reject(new Error(`cannot run ${PYTHON} (set HOLDFAST_PYTHON): ${error.message}`)));
    child.on('close', (code, signal) => resolve({ code, signal, output, pid: child.pid! }));
  });
}

/** True when a process of the group is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the Python client (clients/python), against real holdfast servers', { concurrency: 3 }, () => {
  test('has test modules', () => assert.ok(MODULES.length >= 5, MODULES.join(', ')));
  for (const module of MODULES) {
    test(module, async (t) => {
      const ran = await unittest(module);
      let leftover = false;
      for (let i = 0; i < 50 && groupAlive(ran.pid); i++) await new Promise((r) => setTimeout(r, 100));
      if (groupAlive(ran.pid)) {
        leftover = true;
        process.kill(-ran.pid, 'SIGKILL');
      }
      const summary = /^Ran (\d+) tests? in .*$/m.exec(ran.output);
      assert.equal(ran.code, 0, `python -m unittest ${module} failed (exit ${ran.code ?? ran.signal}):\n${ran.output.slice(-20_000)}`);
      assert.ok(summary && Number(summary[1]) > 0, `no tests ran:\n${ran.output}`);
      assert.match(ran.output, /^OK/m);
      assert.equal(leftover, false, `${module} left processes behind (killed now)`);
      t.diagnostic(summary[0]);
    });
  }
});
