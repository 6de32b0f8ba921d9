/**
 * SPEC 1 and 4, bad input: every invalid request is INVALID_REQUEST (400) naming the field, never
 * another error, and changes nothing in the store. The limits themselves are accepted.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { AcquireOptions, InvalidRequestError, Locks } from '../../src/index.js';
import { rejectsWith, throwsWith } from './helpers.js';
import { describeEachStore, TIMEOUT } from './stores.js';

type Target = Parameters<Locks['acquire']>[0];

interface Case {
  name: string;
  target: Target;
  options?: AcquireOptions;
  field: RegExp;
}

const big = (bytes: number): string => 'x'.repeat(bytes);

const CASES: Case[] = [
  { name: 'empty key', target: '', field: /key/ },
  { name: 'empty segment', target: 'a//b', field: /key/ },
  { name: 'leading slash', target: '/a', field: /key/ },
  { name: 'trailing slash', target: 'a/', field: /key/ },
  { name: 'NUL in key', target: 'a\u0000b', field: /key/ },
  { name: 'newline in key', target: 'a\nb', field: /key/ },
  { name: 'DEL in key', target: 'a\u007fb', field: /key/ },
  { name: '513-byte key', target: big(513), field: /key/ },
  { name: '514-byte key of 2-byte characters', target: 'é'.repeat(257), field: /key/ },
  { name: 'key that is not a string', target: [42 as unknown as string], field: /resources/ },
  { name: 'no resources', target: [], field: /resources/ },
  { name: '65 resources', target: Array.from({ length: 65 }, (_, i) => `many/${i}`), field: /resources/ },
  { name: 'duplicate keys', target: ['dup/1', 'dup/2', 'dup/1'], field: /key/ },
  { name: 'ancestor in the same request', target: ['apps', 'apps/1'], field: /key/ },
  { name: 'descendant before its ancestor in the same request', target: ['apps/1/task', 'apps'], field: /key/ },
  { name: 'unknown resource field', target: [{ key: 'r', mode: 'shared', color: 'red' } as unknown as string], field: /color/ },
  { name: 'bad mode', target: 'm', options: { mode: 'bogus' as 'shared' }, field: /mode/ },
  { name: 'mode beside a resource list', target: ['m1', 'm2'], options: { mode: 'shared' }, field: /mode/ },
  { name: 'limit on exclusive', target: [{ key: 'l', mode: 'exclusive', limit: 2 }], field: /limit/ },
  { name: 'limit on a single exclusive key', target: 'l', options: { limit: 2 }, field: /limit/ },
  { name: 'limit 0', target: [{ key: 'l', mode: 'shared', limit: 0 }], field: /limit/ },
  { name: 'fractional limit', target: [{ key: 'l', mode: 'shared', limit: 1.5 }], field: /limit/ },
  { name: 'limit above 1,000,000', target: [{ key: 'l', mode: 'shared', limit: 1_000_001 }], field: /limit/ },
  { name: 'empty owner', target: 'o', options: { owner: '' }, field: /owner/ },
  { name: '257-byte owner', target: 'o', options: { owner: big(257) }, field: /owner/ },
  { name: 'owner with a control character', target: 'o', options: { owner: 'task\u0007' }, field: /owner/ },
  { name: 'ttl 5 ms', target: 't', options: { ttlMs: 5 }, field: /ttl/ },
  { name: 'ttl 99 ms', target: 't', options: { ttlMs: 99 }, field: /ttl/ },
  { name: 'ttl above 7 days', target: 't', options: { ttlMs: '8d' }, field: /ttl/ },
  { name: 'ttl that is no duration', target: 't', options: { ttlMs: 'soon' }, field: /ttl/ },
  { name: 'negative ttl', target: 't', options: { ttlMs: -1 }, field: /ttl/ },
  { name: 'negative waitMs', target: 'w', options: { waitMs: -5 }, field: /waitMs/ },
  { name: 'waitMs that is no duration', target: 'w', options: { waitMs: 'forever' }, field: /waitMs/ },
  { name: 'metadata above 16 KiB', target: 'md', options: { metadata: { message: big(16_400) } }, field: /metadata/ },
  { name: 'metadata that is an array', target: 'md', options: { metadata: [1, 2] as unknown as Record<string, unknown> }, field: /metadata/ },
  { name: 'metadata that is a string', target: 'md', options: { metadata: 'note' as unknown as Record<string, unknown> }, field: /metadata/ },
  { name: 'empty requestId', target: 'rq', options: { requestId: '' }, field: /requestId/ },
  { name: '257-byte requestId', target: 'rq', options: { requestId: big(257) }, field: /requestId/ },
  { name: 'lockDelayMs above an hour', target: 'ld', options: { lockDelayMs: '2h' }, field: /lockDelay/ },
];

describeEachStore('Bad input', (ctx) => {
  it('every invalid request is INVALID_REQUEST naming its field, try-once or waiting, and changes nothing', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'valid-owner' });
    const other = await ctx.open({ owner: 'holder' });
    await other.acquire('held/key', { ttlMs: 120_000, metadata: { message: 'held' } });
    const before = await a.list();
    const historyBefore = await a.history();
    for (const c of CASES) {
      for (const waitMs of [0, 1000]) {
        const options = { waitMs, ...c.options };
        const error = await rejectsWith<InvalidRequestError>(a.acquire(c.target, options), 'INVALID_REQUEST', 400).catch((e: unknown) => {
          throw new Error(`${c.name} (waitMs ${waitMs}): ${String(e)}`, { cause: e });
        });
        assert.match(error.field, c.field, `${c.name}: the error names "${error.field}": ${error.message}`);
        assert.ok(error.message.length > 0);
      }
      // tryAcquire sets waitMs itself, so a bad waitMs cannot reach it.
      if (c.options?.waitMs === undefined) {
        await rejectsWith(a.tryAcquire(c.target, { ...c.options }), 'INVALID_REQUEST').catch((e: unknown) => {
          throw new Error(`${c.name} (tryAcquire): ${String(e)}`, { cause: e });
        });
      }
    }
    assert.deepEqual(await a.list(), before, 'a rejected request changed the lock table');
    assert.deepEqual(await a.history(), historyBefore, 'a rejected request left history');
  });

  it('a missing owner is INVALID_REQUEST naming the owner', TIMEOUT, async () => {
    const anonymous = await ctx.open({ owner: undefined });
    const error = await rejectsWith<InvalidRequestError>(anonymous.acquire('no/owner'), 'INVALID_REQUEST', 400);
    assert.match(error.field, /owner/);
    assert.deepEqual(await anonymous.list(), { locks: [], waiters: [] });
  });

  it('the admin and read operations reject bad input the same way', TIMEOUT, async () => {
    const a = await ctx.open({ owner: 'a' });
    const lease = await a.acquire('adm/key', { ttlMs: 60_000 });
    const field = async (fn: () => unknown): Promise<string> => (await throwsWith<InvalidRequestError>(fn, 'INVALID_REQUEST', 400)).field;
    assert.match(await field(() => a.releaseOwner('')), /owner/);
    assert.match(await field(() => a.releaseOwner('a', { key: 'a//b' })), /key/);
    assert.match(await field(() => a.forceRelease('/adm')), /key/);
    assert.match(await field(() => a.list({ prefix: 5 as unknown as string })), /prefix/);
    assert.match(await field(() => a.history({ limit: 0 })), /limit/);
    assert.match(await field(() => a.renew(lease.id, { ttlMs: 5 })), /ttl/);
    assert.match(await field(() => lease.renew({ ttlMs: 5 })), /ttl/);
    const record = await a.get(lease.id);
    assert.equal(record!.expiresAt, lease.expiresAt.getTime(), 'a rejected renew changed the lease');
    assert.equal((await a.list()).locks.length, 1);
  });

  it('the limits themselves are accepted', TIMEOUT, async () => {
    const a = await ctx.open({ owner: big(256) });
    const accepted: [Target, AcquireOptions][] = [
      [big(512), {}],
      ['é'.repeat(256), {}],
      ['seg/' + 'é'.repeat(254), {}],
      [Array.from({ length: 64 }, (_, i) => `lim64/${i}`), {}],
      ['ttl/min', { ttlMs: 100 }],
      ['ttl/max', { ttlMs: '7d' }],
      ['meta/max', { metadata: { message: big(16_000) } }],
      ['limit/max', { mode: 'shared', limit: 1_000_000 }],
      ['rq/max', { requestId: big(256) }],
      ['unicode/ключ/キー', {}],
    ];
    for (const [target, options] of accepted) {
      const lease = await a.acquire(target, options);
      await lease.release();
    }
  });
});
