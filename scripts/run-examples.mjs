#!/usr/bin/env node
// Runs every compiled example (dist/examples/*.js) in turn, each in its own process, against
// HOLDFAST_STORE (default: `sqlite:` on a fresh temporary file, removed afterwards), and prints
// their transcripts. Arguments narrow the run to examples whose name contains one of them:
// `npm run examples -- ovirt`. Exits non-zero if any example fails.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'dist', 'examples');
if (!existsSync(dir)) {
  console.error('dist/examples is missing: build first (npm run build)');
  process.exit(1);
}

const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const examples = readdirSync(dir)
  .filter((name) => name.endsWith('.js') && !name.startsWith('_'))
  .filter((name) => filters.length === 0 || filters.some((f) => name.includes(f)))
  .sort();
if (examples.length === 0) {
  console.error(`no examples matched ${filters.join(' ')}`);
  process.exit(1);
}

let temp = null;
let store = process.env.HOLDFAST_STORE;
if (!store) {
  temp = mkdtempSync(join(tmpdir(), 'holdfast-examples-'));
  store = `sqlite:${join(temp, 'holdfast.db')}`;
}

function runOne(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--enable-source-maps', join(dir, file), store], { stdio: 'inherit', env: process.env });
    child.on('error', (error) => {
      console.error(error);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const failed = [];
try {
  for (const file of examples) {
    console.log(`\n=== ${file.replace(/\.js$/, '')} (store ${store}) ===`);
    const started = performance.now();
    const code = await runOne(file);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(code === 0 ? `--- ok (${seconds} s)` : `--- FAILED with exit code ${code} (${seconds} s)`);
    if (code !== 0) failed.push(file);
  }
} finally {
  if (temp) rmSync(temp, { recursive: true, force: true });
}
console.log(`\n${examples.length - failed.length} of ${examples.length} examples ran${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
