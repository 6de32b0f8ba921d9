import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const root = fileURLToPath(new URL('../../../../', import.meta.url));

test('library.generated.ts is up to date with library/*.lua', () => {
  const run = spawnSync(process.execPath, ['scripts/embed-lua.mjs', '--check'], { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
});
