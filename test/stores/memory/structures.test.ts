/**
 * The memory store's own structures: the multi-map behind its key and owner indexes, the ring
 * of ended lease ids and the history ring. The conformance suite checks the store's behaviour;
 * these check the edges each structure handles on its own (a lone value and a set of them, empty
 * keys dropped, ids forgotten in order, history paging across the ring's wrap).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newLeaseId } from '../../../src/model/request.js';
import { EndedIds } from '../../../src/stores/memory/ended-ids.js';
import { HistoryRing } from '../../../src/stores/memory/history-ring.js';
import { MultiMap } from '../../../src/stores/memory/multi-map.js';
import { ChurnMap } from '../../../src/util/churn-map.js';

test('MultiMap keeps one value or several per key, and forgets a key whose values are all gone', () => {
  const map = new MultiMap<string, number>();
  map.add('a', 1);
  assert.deepEqual(map.get('a'), [1]);
  map.add('a', 1); // a value is in a key once
  assert.deepEqual(map.get('a'), [1]);
  map.add('a', 2);
  map.add('a', 3);
  assert.deepEqual(map.get('a').sort(), [1, 2, 3]);
  map.delete('a', 2);
  assert.deepEqual(map.get('a').sort(), [1, 3]);
  map.delete('a', 1);
  assert.deepEqual(map.get('a'), [3]);
  map.delete('a', 4); // not there: nothing changes
  assert.deepEqual(map.get('a'), [3]);
  assert.equal(map.size, 1);
  map.delete('a', 3);
  assert.equal(map.has('a'), false);
  assert.deepEqual(map.get('a'), []);
  assert.equal(map.size, 0);
  assert.deepEqual([...map.entries()], []);
  map.add('a', 5);
  assert.deepEqual([...map.entries()], [['a', [5]]]);
});

test('MultiMap stays right while empty keys pile up and are dropped', () => {
  const map = new MultiMap<string, number>();
  map.add('live', 0);
  // Far more keys emptied than PRUNE_MIN, and a hot key emptied and refilled many times.
  for (let i = 0; i < 5000; i++) {
    map.add(`k${i}`, i);
    map.delete(`k${i}`, i);
    map.add('hot', i);
    map.delete('hot', i);
  }
  assert.equal(map.size, 1);
  assert.deepEqual([...map.entries()], [['live', [0]]]);
  map.add('hot', 7);
  assert.deepEqual(map.get('hot'), [7]);
  assert.equal(map.size, 2);
});

test('EndedIds finds the last limit/2 ids exactly, and none older than limit', () => {
  const ended = new EndedIds(1000);
  const ids: string[] = [];
  for (let i = 0; i < 5000; i++) {
    // Lease ids and ids of other shapes (an HTTP client may send its own).
    const id = i % 3 === 0 ? `x${i}` : newLeaseId();
    ids.push(id);
    ended.add(id);
    for (const back of [0, 1, 250, 499]) {
      if (i - back >= 0) assert.ok(ended.has(ids[i - back]!), `id ${i - back} forgotten at ${i}`);
    }
    if (i >= 1000) assert.equal(ended.has(ids[i - 1000]!), false, `id ${i - 1000} kept at ${i}`);
  }
  for (let i = 0; i < 20_000; i++) assert.equal(ended.has(newLeaseId()), false);
  assert.equal(ended.has(''), false);
});

test('HistoryRing answers newest first, filters, pages by id, and keeps only the last limit', () => {
  const ring = new HistoryRing(5);
  const r = (key: string) => [{ key, mode: 'exclusive' as const, limit: null }];
  for (let i = 1; i <= 8; i++) ring.record(1_700_000_000_000 + i, i % 2 ? 'acquired' : 'released', i % 3 ? 'a' : 'b', i, r(`k${i % 2}`), null, null);
  const all = ring.read({});
  assert.deepEqual(all.map((e) => e.id), [8, 7, 6, 5, 4]);
  assert.equal(all[0]!.at, new Date(1_700_000_000_008).toISOString());
  assert.equal(all[0]!.fence, 8);
  assert.equal(all[0]!.type, 'released');
  assert.deepEqual(ring.read({ limit: 2 }).map((e) => e.id), [8, 7]);
  assert.deepEqual(ring.read({ beforeId: 7 }).map((e) => e.id), [6, 5, 4]);
  assert.deepEqual(ring.read({ beforeId: 4 }).map((e) => e.id), []);
  assert.deepEqual(ring.read({ owner: 'b' }).map((e) => e.id), [6]);
  assert.deepEqual(ring.read({ key: 'k1' }).map((e) => e.id), [7, 5]);
  assert.deepEqual(new HistoryRing(3).read({}), []);
});

test('ChurnMap behaves as a Map of its own entries (its private floor entry never shows)', () => {
  const map = new ChurnMap<string, number>();
  assert.equal(map.size, 0);
  assert.deepEqual([...map.values()], []);
  for (let i = 0; i < 1000; i++) {
    map.set(`k${i}`, i);
    assert.equal(map.get(`k${i}`), i);
    if (i % 2 === 0) assert.equal(map.delete(`k${i}`), true);
  }
  assert.equal(map.size, 500);
  assert.equal(map.has('k1'), true);
  assert.equal(map.has('k0'), false);
  assert.equal(map.delete('k0'), false);
  assert.equal([...map.values()].length, 500);
  map.clear();
  assert.equal(map.size, 0);
  assert.deepEqual([...map.values()], []);
  map.set('a', 1);
  assert.deepEqual([...map.values()], [1]);
});

test('ChurnMap keeps insertion order and one entry per key across its inline entry and its Map', () => {
  const map = new ChurnMap<string, number>();
  map.set('a', 1); // inline: the map is empty
  map.set('b', 2);
  map.set('a', 10); // updated in place, still first
  assert.deepEqual([...map.values()], [10, 2]);
  assert.equal(map.delete('a'), true);
  map.set('c', 3); // the Map still holds b, so c goes after it
  assert.deepEqual([...map.values()], [2, 3]);
  assert.equal(map.size, 2);
  assert.equal(map.delete('b'), true);
  assert.equal(map.delete('c'), true);
  assert.equal(map.size, 0);
  map.set('d', 4); // empty again: inline
  assert.equal(map.get('d'), 4);
  assert.equal(map.has('b'), false);
  assert.equal(map.get('b'), undefined);
  assert.equal(map.delete('d'), true);
  assert.equal(map.delete('d'), false);
  assert.deepEqual([...map.values()], []);
});
