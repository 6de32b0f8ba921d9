/**
 * The sqlite store against the memory store (the reference `TableState`): the same random
 * sequence of operations must give the same outcomes, changes, tables and history (times aside).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HoldfastError } from '../../../src/model/errors.js';
import { newLeaseId, type RequestInput } from '../../../src/model/request.js';
import { createMemoryStore } from '../../../src/stores/memory/store.js';
import type { LockStore, StoreChange } from '../../../src/stores/store.js';
import { createSqliteStore } from '../../../src/stores/sqlite/store.js';
import { request, tempDir } from './helpers.js';

const tmp = tempDir('differential');
after(tmp.remove);

const KEYS = ['a', 'a/b', 'a/b/c', 'a/c', 'a0', 'ab', 'a.b', 'b', 'b/x', 'é', 'é/ü', '😀/x'];
const OWNERS = ['o1', 'o2', 'o3'];
const TIME_FIELDS = new Set(['now', 'at', 'acquiredAt', 'expiresAt', 'since', 'waitUntil', 'retryAfterMs', 'nextCheckMs']);

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Drops store times (the two stores have different clocks) and sorts holder lists. */
function normalize(value: unknown, parentKey = ''): unknown {
  if (Array.isArray(value)) {
    const items = value.map((v) => normalize(v));
    // Holders come in the order each state finds them; the waiters of `list` are ordered by queue
    // position, but the resources of one waiter in the state's own order.
    return parentKey === 'holders' || parentKey === 'waiters' ? items.map((v) => JSON.stringify(v)).sort() : items;
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).filter(([k]) => !TIME_FIELDS.has(k)).map(([k, v]) => [k, normalize(v, k)]),
    );
  }
  return value;
}

async function outcome(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    return normalize(await fn());
  } catch (error) {
    return error instanceof HoldfastError ? { error: error.code, message: error.message } : { thrown: String(error) };
  }
}

describe('sqlite store matches the memory store', () => {
  for (const seed of [1, 2, 3]) {
    it(`on a random run (seed ${seed})`, async () => {
      const next = random(seed);
      const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
      const memory = createMemoryStore();
      const sqlite = createSqliteStore(join(tmp.dir, `seed-${seed}.db`), { synchronous: 'NORMAL' });
      const stores: [LockStore, LockStore] = [memory, sqlite];
      const changes: [StoreChange[], StoreChange[]] = [[], []];
      stores.forEach((s, i) => s.watch((c) => changes[i]!.push(c)));
      const ids: string[] = [];
      try {
        for (let step = 0; step < 300; step++) {
          const op = next();
          let run: (store: LockStore) => Promise<unknown>;
          let label: string;
          if (op < 0.45 || ids.length === 0) {
            const count = next() < 0.7 ? 1 : 2;
            const resources = Array.from({ length: count }, () => {
              const shared = next() < 0.4;
              return { key: pick(KEYS), mode: shared ? ('shared' as const) : ('exclusive' as const), limit: shared && next() < 0.3 ? 2 : null };
            });
            const input: RequestInput = { owner: pick(OWNERS), resources, metadata: { step } };
            if (next() < 0.15) input.requestId = `r${Math.floor(next() * 4)}`;
            let id = newLeaseId();
            if (next() < 0.03) id = pick(ids);
            const waitMs = next() < 0.5 ? 0 : 60_000;
            let req;
            try {
              req = request(input, id);
            } catch {
              continue; // duplicate or nested keys: validation's business, not the store's
            }
            ids.push(id);
            label = `acquire ${JSON.stringify(input)} wait ${waitMs}`;
            run = (s) => s.acquire(req, { waitMs, waiterTtlMs: 60_000 });
          } else if (op < 0.6) {
            const id = pick(ids);
            label = `release ${id}`;
            run = (s) => s.release(id);
          } else if (op < 0.7) {
            const id = pick(ids);
            label = `poll ${id}`;
            run = (s) => s.poll(id);
          } else if (op < 0.78) {
            const id = pick(ids);
            label = `cancel ${id}`;
            run = (s) => s.cancel(id);
          } else if (op < 0.84) {
            const id = pick(ids);
            label = `renew ${id}`;
            run = (s) => s.renew(id, 60_000);
          } else if (op < 0.9) {
            const owner = pick(OWNERS);
            const key = next() < 0.5 ? pick(KEYS) : undefined;
            label = `releaseOwner ${owner} ${key}`;
            run = (s) => s.releaseOwner(owner, { key, by: 'test' });
          } else if (op < 0.95) {
            const key = pick(KEYS);
            label = `forceRelease ${key}`;
            run = (s) => s.forceRelease(key, { by: 'test' });
          } else {
            const id = pick(ids);
            label = `get ${id}`;
            run = (s) => s.get(id);
          }
          changes[0].length = 0;
          changes[1].length = 0;
          const expected = await outcome(() => run(memory));
          const actual = await outcome(() => run(sqlite));
          const where = `seed ${seed} step ${step}: ${label}`;
          assert.deepEqual(actual, expected, where);
          assert.deepEqual(normalize(changes[1]), normalize(changes[0]), `${where} (changes)`);
          const tables = await Promise.all(stores.map((s) => s.list()));
          assert.deepEqual(normalize(tables[1]), normalize(tables[0]), `${where} (list)`);
        }
        const histories = await Promise.all(stores.map((s) => s.history({ limit: 10_000 })));
        assert.ok(histories[0]!.length > 50);
        assert.deepEqual(normalize(histories[1]), normalize(histories[0]), `seed ${seed}: history`);
        for (const prefix of ['a', 'a/', 'é', 'z']) {
          const tables = await Promise.all(stores.map((s) => s.list({ prefix })));
          assert.deepEqual(normalize(tables[1]), normalize(tables[0]), `seed ${seed}: list ${prefix}`);
        }
      } finally {
        await memory.close();
        await sqlite.close();
      }
    });
  }
});
