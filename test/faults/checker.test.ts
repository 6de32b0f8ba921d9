/**
 * The fault harness's checker is itself tested: a clean history passes, and a planted overlap,
 * a planted fence regression, a planted lost write (and the other checks' faults) are each caught.
 * Then a ~5 s run of the real harness on SQLite with the kill and pause nemeses has no violation.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { HistoryEvent, HistoryType, Mode, Resource } from '../../src/model/types.js';
import { check, type CheckId } from '../../faults/checker.js';
import type { NemesisEvent, RegisterRow, RunRecord, WorkerEvent } from '../../faults/history.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const K = 'fx/k0';

/** Builds a run record step by step: leases in the store, what the workers did, the register. */
class Run {
  readonly history: HistoryEvent[] = [];
  readonly events: WorkerEvent[] = [];
  readonly register: RegisterRow[] = [];
  readonly nemeses: NemesisEvent[] = [];
  #op = 0;

  storeEvent(type: HistoryType, fence: number, owner: string, resources: Resource[], at: number): void {
    const reason = type === 'acquired' ? null : type === 'expired' ? 'expiry' : type === 'forced' ? 'force' : 'release';
    this.history.push({ id: this.history.length + 1, at: new Date(T0 + at).toISOString(), type, owner, fence, resources, by: null, reason });
  }

  /**
   * One lease, as the store and its worker saw it: acquired at `from`, one write of `key` at
   * `from + 1` (accepted unless `refused`), released at `to` (or expired there with `expire`).
   */
  lease(w: string, fence: number, from: number, to: number, options: { mode?: Mode; key?: string; expire?: boolean; refusedBy?: number; write?: boolean } = {}): string {
    const key = options.key ?? K;
    const resources: Resource[] = [{ key, mode: options.mode ?? 'exclusive', limit: null }];
    const acquire = `${w}#${++this.#op}`;
    this.storeEvent('acquired', fence, w, resources, from);
    this.events.push({ w, t: T0 + from - 1, type: 'invoke', f: 'acquire', op: acquire, resources, waitMs: 1000, ttlMs: 2000 });
    this.events.push({ w, t: T0 + from, type: 'ok', f: 'acquire', op: acquire, fence, expiresAt: T0 + from + 2000 });
    if (options.write !== false) {
      const write = `${w}#${++this.#op}`;
      this.events.push({ w, t: T0 + from + 1, type: 'invoke', f: 'write', op: write, lease: acquire, fence, key, mode: options.mode ?? 'exclusive', live: true });
      if (options.refusedBy !== undefined) {
        this.events.push({ w, t: T0 + from + 2, type: 'fail', f: 'write', op: write, highest: options.refusedBy, live: !options.expire });
      } else {
        const seq = this.register.length + 1;
        this.register.push({ seq, key, fence, mode: options.mode ?? 'exclusive', writer: w, lease: acquire, op: write });
        this.events.push({ w, t: T0 + from + 2, type: 'ok', f: 'write', op: write, seq, live: true });
      }
    }
    if (options.expire) {
      this.storeEvent('expired', fence, w, resources, to);
      this.events.push({ w, t: T0 + to - 100, type: 'lost', fence, reason: 'it could not be renewed before its deadline' });
      this.events.push({ w, t: T0 + to - 50, type: 'skip-release', lease: acquire, fence, state: 'lost' });
    } else {
      const release = `${w}#${++this.#op}`;
      this.events.push({ w, t: T0 + to - 1, type: 'invoke', f: 'release', op: release, lease: acquire, fence });
      this.storeEvent('released', fence, w, resources, to);
      this.events.push({ w, t: T0 + to, type: 'ok', f: 'release', op: release, released: true });
    }
    return acquire;
  }

  record(): RunRecord {
    const last = new Map<string, RegisterRow>();
    for (const row of this.register) last.set(row.key, row);
    return {
      config: { runId: 'x', store: 'test', keyPrefix: 'fx', ttlMs: 2000, waiterTtlMs: 2000, waitToleranceMs: 1000, outageAllowanceMs: 5000, clockToleranceMs: 250 },
      events: this.events, nemeses: this.nemeses, processes: [], history: this.history, register: this.register,
      registerValues: [...last.values()].map((r) => ({ key: r.key, fence: r.fence, op: r.op, writes: 1 })),
      finalList: { locks: [], waiters: [] },
    };
  }
}

/** A clean run: hand-offs on one key, two shared holders at once, a lease lost and expired. */
function cleanRun(): Run {
  const run = new Run();
  run.lease('w1', 1, 0, 100);
  run.lease('w2', 2, 100, 200);
  run.lease('w1', 3, 200, 400, { mode: 'shared', key: 'fx/k1' });
  run.lease('w2', 4, 250, 450, { mode: 'shared', key: 'fx/k1' });
  run.lease('w3', 5, 300, 2300, { expire: true });
  run.lease('w1', 6, 2300, 2400);
  return run;
}

const checks = (record: RunRecord): CheckId[] => check(record).violations.map((v) => v.check);

describe('fault checker', () => {
  test('a clean history passes, with its counts', () => {
    const result = check(cleanRun().record());
    assert.deepEqual(result.violations, []);
    assert.equal(result.counts.grants, 6);
    assert.equal(result.counts.writesAccepted, 6);
    assert.equal(result.counts.lost, 1);
    assert.equal(result.counts.explained.selfFenced, 1);
  });

  test('a planted overlap of two exclusive leases is caught (a)', () => {
    const run = cleanRun();
    run.lease('w4', 7, 2350, 2500, { write: false }); // w1 holds fence 6 until 2400
    const result = check(run.record());
    assert.deepEqual(result.violations.map((v) => v.check), ['a']);
    assert.match(result.violations[0]!.message, /fences 6 \(w1\) and 7 \(w4\) held conflicting locks at once/);
  });

  test('an ancestor key overlapping its descendant is caught, shared holders are not (a)', () => {
    const run = cleanRun();
    run.lease('w4', 7, 2350, 2500, { key: 'fx', write: false });
    run.lease('w5', 8, 2600, 2700, { mode: 'shared', key: 'fx', write: false });
    run.lease('w6', 9, 2650, 2750, { mode: 'shared', key: 'fx/k2', write: false });
    assert.deepEqual(checks(run.record()), ['a']);
  });

  test('a shared key above its limit is caught (a)', () => {
    const run = new Run();
    const semaphore: Resource[] = [{ key: K, mode: 'shared', limit: 2 }];
    for (const fence of [1, 2, 3]) run.storeEvent('acquired', fence, `w${fence}`, semaphore, fence * 10);
    for (const fence of [1, 2, 3]) run.storeEvent('released', fence, `w${fence}`, semaphore, 100 + fence);
    assert.deepEqual(checks(run.record()), ['a']);
  });

  test('a planted fence regression in the register is caught (b)', () => {
    const run = cleanRun();
    // Fence 2 accepted again after fence 6 on the same key: the register let a stale writer in.
    run.register.push({ seq: run.register.length + 1, key: K, fence: 2, mode: 'exclusive', writer: 'w2', lease: 'w2#1', op: 'w2#99' });
    run.events.push({ w: 'w2', t: T0 + 3000, type: 'invoke', f: 'write', op: 'w2#99', lease: 'w2#5', fence: 2, key: K, mode: 'exclusive', live: false });
    const record = run.record();
    const violations = check(record).violations;
    assert.deepEqual(violations.map((v) => v.check), ['b']);
    assert.match(violations[0]!.message, /fence regression on "fx\/k0": seq \d+ fence 6, then seq \d+ fence 2/);
  });

  test('an exclusive fence accepted twice, and a refusal of a live exclusive lease, are caught (b)', () => {
    const twice = cleanRun();
    const row = twice.register.find((r) => r.fence === 6)!;
    twice.register.push({ ...row, seq: twice.register.length + 1, op: 'w1#98' });
    twice.events.push({ w: 'w1', t: T0 + 2350, type: 'invoke', f: 'write', op: 'w1#98', lease: row.lease, fence: 6, key: K, mode: 'exclusive', live: true });
    assert.deepEqual(checks(twice.record()), ['b']);

    const superseded = cleanRun();
    superseded.lease('w2', 7, 2400, 2500, { refusedBy: 8 });
    superseded.lease('w3', 8, 2600, 2700);
    assert.deepEqual(checks(superseded.record()), ['b']);
  });

  test('a stale write refused after a pause is counted, not a violation', () => {
    const run = cleanRun();
    run.lease('w4', 7, 2400, 4400, { expire: true, refusedBy: 8 });
    run.lease('w5', 8, 4400, 4500);
    const result = check(run.record());
    assert.deepEqual(result.violations, []);
    assert.equal(result.counts.staleRefused, 1);
  });

  test('a planted lost write is caught (c)', () => {
    const run = cleanRun();
    const lostRow = run.register.splice(2, 1)[0]!;
    const result = check(run.record());
    assert.deepEqual(result.violations.map((v) => v.check), ['c']);
    assert.match(result.violations[0]!.message, new RegExp(`write ${lostRow.op.replace('#', '#')} .* is not in the register`));
  });

  test('a lease that never ended, or a lock left at the end, is caught (d)', () => {
    const run = cleanRun();
    run.storeEvent('acquired', 7, 'w9', [{ key: 'fx/k3', mode: 'exclusive', limit: null }], 3000);
    run.events.push({ w: 'w9', t: T0 + 2999, type: 'invoke', f: 'acquire', op: 'w9#1', resources: [{ key: 'fx/k3', mode: 'exclusive', limit: null }], waitMs: 0, ttlMs: 2000 });
    const record = run.record();
    record.finalList.locks.push({ key: 'fx/k3', mode: 'exclusive', limit: null, owner: 'w9', fence: 7, acquiredAt: '', expiresAt: '', metadata: {} });
    assert.deepEqual(checks(record), ['d', 'd']);
  });

  test('a wait past its waitMs is caught, unless the worker was paused (e)', () => {
    const run = cleanRun();
    run.events.push({ w: 'w7', t: T0 + 5000, type: 'invoke', f: 'acquire', op: 'w7#1', resources: [{ key: K, mode: 'exclusive', limit: null }], waitMs: 500, ttlMs: 2000 });
    run.events.push({ w: 'w7', t: T0 + 7000, type: 'fail', f: 'acquire', op: 'w7#1', code: 'WAIT_TIMEOUT', message: '' });
    assert.deepEqual(checks(run.record()), ['e']);
    run.nemeses.push({ t: T0 + 5100, end: T0 + 6900, nemesis: 'pause', targets: ['w7'], detail: '' });
    assert.deepEqual(checks(run.record()), []);
  });

  test('unexplained lost leases are caught both ways (f)', () => {
    // A lease that expired while its live holder never saw it lost and released it afterwards.
    const unseen = cleanRun();
    const op = unseen.lease('w4', 7, 2400, 2500, { write: false });
    const released = unseen.history.findIndex((e) => e.fence === 7 && e.type === 'released');
    unseen.history[released] = { ...unseen.history[released]!, type: 'expired', reason: 'expiry', at: new Date(T0 + 4400).toISOString() };
    const answer = unseen.events.find((e) => e.type === 'ok' && e.f === 'release' && e.w === 'w4')!;
    Object.assign(answer, { released: false });
    const violations = check(unseen.record()).violations;
    assert.deepEqual(violations.map((v) => v.check), ['f'], op);
    assert.match(violations[0]!.message, /used lease 7 until its release, after the store had expired it/);

    // A lease its worker saw lost that the store ended by a normal release.
    const contradicted = cleanRun();
    const expired = contradicted.history.findIndex((e) => e.fence === 5 && e.type === 'expired');
    contradicted.history[expired] = { ...contradicted.history[expired]!, type: 'released', reason: 'release' };
    assert.deepEqual(checks(contradicted.record()), ['f']);
  });

  test('a grant to an aborted request is caught, unless the answer came after the store expired it (f)', () => {
    /** A lease granted at 3000 and expired at 5000 to a request of w5 answered ABORTED at `answeredAt`. */
    const aborted = (answeredAt: number): Run => {
      const run = cleanRun();
      const resources: Resource[] = [{ key: K, mode: 'exclusive', limit: null }];
      run.events.push({ w: 'w5', t: T0 + 2900, type: 'invoke', f: 'acquire', op: 'w5#1', resources, waitMs: 3000, ttlMs: 2000 });
      run.storeEvent('acquired', 9, 'w5', resources, 3000);
      run.storeEvent('expired', 9, 'w5', resources, 5000);
      run.events.push({ w: 'w5', t: T0 + answeredAt, type: 'fail', f: 'acquire', op: 'w5#1', code: 'ABORTED', message: 'Error: stopping' });
      return run;
    };
    const early = check(aborted(3500).record()).violations;
    assert.deepEqual(early.map((v) => v.check), ['f']);
    assert.match(early[0]!.message, /lease 9 of w5 expired unseen: granted to w5#1, which was answered ABORTED/);
    // Answered once the lease had run out (a slow store call): nothing was left to give back.
    const late = check(aborted(5200).record());
    assert.deepEqual(late.violations, []);
    assert.equal(late.counts.explained.orphaned, 1);
  });
});

/** Runs the real harness (dist/faults/main.js) on a fresh SQLite file; its exit code and output. */
async function harness(args: string[]): Promise<{ code: number | null; out: string; summary: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-faults-test-'));
  try {
    const main = fileURLToPath(new URL('../../faults/main.js', import.meta.url));
    const child = spawn(process.execPath, [main, '--store', `sqlite:${join(dir, 'store.db')}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const kept = /run directory kept: (\S+)/.exec(out)?.[1];
    if (kept !== undefined && code !== 0 && args.includes('--canary')) rmSync(kept, { recursive: true, force: true });
    return { code, out, summary: out.split('\n').find((l) => l.startsWith('faults: store=sqlite')) ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('fault harness, end to end', () => {
  test('5 s on SQLite with kill and pause: no violation', { timeout: 90_000 }, async () => {
    const { code, out, summary } = await harness(['--duration', '5s', '--workers', '6', '--nemesis', 'kill,pause', '--interval', '600ms', '--seed', '42']);
    assert.equal(code, 0, out);
    assert.match(summary, /violations=0$/, out);
    const grants = Number(/grants=(\d+)/.exec(summary)?.[1]);
    const injected = [...summary.matchAll(/(?:kill|pause)=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(grants > 5 && injected > 0, summary);
  });

  test('the canary: half the workers locking in another SQLite file is caught', { timeout: 90_000 }, async () => {
    const { code, out, summary } = await harness(['--duration', '4s', '--nemesis', 'none', '--seed', '7', '--canary', 'split-brain']);
    assert.equal(code, 1, out);
    assert.match(summary, /violations=[1-9]/, out);
    assert.match(out, /^VIOLATION \((a|b)\)/m);
  });
});
