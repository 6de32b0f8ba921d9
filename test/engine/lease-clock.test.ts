/**
 * The one timer behind every lease's renewals and deadline (LeaseClock): entries fire in due
 * order, a moved or cancelled entry fires when moved to or not at all, an entry due sooner than
 * the armed timer re-arms it, a throwing callback breaks nothing, and close() fires nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LeaseClock } from '../../src/engine/lease-clock.js';

test('entries fire in due order; moved and cancelled ones as they were left', async () => {
  const clock = new LeaseClock();
  const fired: string[] = [];
  const at = (ms: number): number => performance.now() + ms;
  const a = clock.entry(() => fired.push('a'));
  const b = clock.entry(() => fired.push('b'));
  const c = clock.entry(() => fired.push('c'));
  const d = clock.entry(() => {
    fired.push('d');
    throw new Error('a callback that throws breaks nothing');
  });
  clock.schedule(a, at(120));
  clock.schedule(b, at(60));
  clock.schedule(c, at(200));
  clock.schedule(d, at(90));
  clock.schedule(c, at(30)); // moved earlier than the armed timer: re-arms it
  clock.schedule(b, at(150)); // moved later
  clock.cancel(a);
  clock.cancel(a); // twice: nothing
  assert.equal(clock.size, 3);
  await sleep(260);
  assert.deepEqual(fired, ['c', 'd', 'b']);
  assert.equal(clock.size, 0);
  // An entry can be scheduled again after it fired.
  clock.schedule(a, at(10));
  await sleep(60);
  assert.deepEqual(fired, ['c', 'd', 'b', 'a']);
  clock.close();
});

test('many entries in random order fire sorted; close() fires none of the rest', async () => {
  const clock = new LeaseClock();
  const fired: number[] = [];
  const start = performance.now();
  const entries = Array.from({ length: 200 }, (_, i) => ({ i, ms: 20 + ((i * 7919) % 100), e: clock.entry(() => fired.push(i)) }));
  for (const { ms, e } of entries) clock.schedule(e, start + ms);
  for (const { i, e } of entries) if (i % 5 === 0) clock.cancel(e);
  await sleep(160);
  const expected = entries.filter(({ i }) => i % 5 !== 0).sort((x, y) => x.ms - y.ms || 0).map(({ ms }) => ms);
  assert.deepEqual(fired.map((i) => entries[i]!.ms), expected);
  const late = clock.entry(() => fired.push(-1));
  clock.schedule(late, performance.now() + 20);
  clock.close();
  clock.schedule(late, performance.now() + 20); // closed: not scheduled
  await sleep(50);
  assert.equal(fired.includes(-1), false);
});
