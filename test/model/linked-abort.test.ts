import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { combineSignals, LinkedAbort, unlimitListeners } from '../../src/model/linked-abort.js';

describe('LinkedAbort', () => {
  it('aborts with the reason of whichever parent aborts, and with its own', () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = new LinkedAbort(a.signal, b.signal);
    b.abort(new Error('b went'));
    assert.equal(linked.signal.aborted, true);
    assert.equal((linked.signal.reason as Error).message, 'b went');
    const own = new LinkedAbort(a.signal);
    own.abort(new Error('mine'));
    assert.equal((own.signal.reason as Error).message, 'mine');
    assert.equal(a.signal.aborted, false, 'a child never aborts its parent');
  });

  it('starts aborted when a parent already is', () => {
    const a = AbortSignal.abort(new Error('early'));
    const linked = new LinkedAbort(new AbortController().signal, a);
    assert.equal((linked.signal.reason as Error).message, 'early');
  });

  it('leaves no listener on its parents once unlinked', () => {
    const parent = unlimitListeners(new AbortController().signal);
    const links = Array.from({ length: 50 }, () => new LinkedAbort(parent));
    assert.equal(getEventListeners(parent, 'abort').length, 50);
    for (const link of links) link.unlink();
    assert.equal(getEventListeners(parent, 'abort').length, 0);
  });
});

describe('combineSignals', () => {
  it('adds no listener to a caller signal (many calls may share it): AbortSignal.any', () => {
    const caller = new AbortController();
    const own = unlimitListeners(new AbortController().signal);
    const combined = Array.from({ length: 20 }, () => combineSignals(caller.signal, own));
    assert.equal(getEventListeners(caller.signal, 'abort').length, 0);
    caller.abort(new Error('caller'));
    for (const c of combined) assert.equal((c.signal.reason as Error).message, 'caller');
  });

  it('links holdfast signals with a listener that unlink removes', () => {
    const own = unlimitListeners(new AbortController().signal);
    const child = new LinkedAbort(own);
    const combined = combineSignals(child.signal, own);
    assert.equal(getEventListeners(child.signal, 'abort').length, 1);
    combined.unlink();
    assert.equal(getEventListeners(child.signal, 'abort').length, 0);
    child.abort(new Error('gone'));
    assert.equal(combined.signal.aborted, false, 'unlinked: no longer follows');
  });
});
