/**
 * Keeps the benchmark harness from rotting: one iteration of every suite on memory and SQLite
 * (a second or two). The numbers are not looked at; benchmarks themselves are never part of
 * `npm test` (run them with `npm run bench`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderTables } from '../../bench/harness.js';
import { runBench, SUITE_NAMES } from '../../bench/run.js';

test('every benchmark suite runs once on memory and sqlite', { timeout: 60_000 }, async () => {
  const suites = SUITE_NAMES.filter((name) => name !== 'postgres' && name !== 'mysql');
  const result = await runBench({ profile: 'smoke', suites, stores: ['memory', 'sqlite'] });
  assert.deepEqual(result.failures, [], JSON.stringify(result.rows.filter((r) => r.metric === 'skipped')));
  for (const suite of suites) {
    const rows = result.rows.filter((r) => r.suite === suite);
    assert.ok(rows.length > 0, `${suite} recorded no rows`);
    assert.ok(!rows.some((r) => r.metric === 'skipped'), `${suite} skipped`);
  }
  for (const row of result.rows) {
    assert.equal(typeof row.value, 'number', `${row.suite} / ${row.case} / ${row.metric}`);
    assert.ok(row.unit.length > 0, `${row.suite} / ${row.case} / ${row.metric} has no unit`);
  }
  for (const subject of ['holdfast', 'async-mutex', 'naive-sqlite', 'poll-10ms', 'redlock-retry']) {
    assert.ok(result.rows.some((r) => r.subject === subject), `no rows for ${subject}`);
  }
  const table = renderTables(result.rows);
  assert.match(table, /holdfast\/async-mutex/);
  assert.match(table, /### scale/);
  JSON.parse(JSON.stringify(result));
});

test('a suite whose store is unreachable is skipped, not failed', { timeout: 30_000 }, async () => {
  const result = await runBench({ profile: 'smoke', suites: ['postgres'], postgresUrl: 'postgres://nobody@127.0.0.1:1/none' });
  assert.deepEqual(result.failures, []);
  const skipped = result.rows.find((r) => r.suite === 'postgres' && r.metric === 'skipped');
  assert.ok(skipped, 'no skipped row');
  assert.match(skipped.note ?? '', /unreachable/);
  assert.match(renderTables(result.rows), /### postgres \(skipped\)/);
});
