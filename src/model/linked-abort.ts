/**
 * An AbortController that also aborts when one of some longer-lived signals does (the server's
 * shutdown, a `Locks`'s close, a caller's signal), unlinked again when the short-lived work is
 * done. It does what `AbortSignal.any([own, ...parents])` does for one request, without its cost: in Node 20 every
 * `AbortSignal.any` registers weak references that the garbage collector must trace, which was
 * 8% of the server's CPU at 64 clients (issue 17's profile). One listener on each parent, removed
 * by `unlink()`, so nothing is left on a parent after the work.
 *
 * Parents are signals of holdfast's own whose listener limit was lifted (`unlimitListeners`: a
 * server's shutdown, a `Locks`'s close, which every call in flight follows) or another
 * LinkedAbort's signal (one follower each). A caller's signal, which many calls may share, is
 * combined with `AbortSignal.any` instead (`combineSignals`), so it never warns of a listener leak.
 */
import { setMaxListeners } from 'node:events';

const linkable = new WeakSet<AbortSignal>();

/** A long-lived signal of holdfast's own that any number of calls in flight may follow. */
export function unlimitListeners(signal: AbortSignal): AbortSignal {
  setMaxListeners(0, signal);
  linkable.add(signal);
  return signal;
}

export class LinkedAbort {
  readonly #controller = new AbortController();
  readonly #parents: readonly AbortSignal[];
  readonly #onParent = (event: Event): void => this.#controller.abort((event.target as AbortSignal).reason);

  constructor(...parents: AbortSignal[]) {
    this.#parents = parents;
    linkable.add(this.#controller.signal);
    for (const parent of parents) {
      if (parent.aborted) {
        this.#controller.abort(parent.reason);
        break;
      }
    }
    if (!this.#controller.signal.aborted) for (const parent of parents) parent.addEventListener('abort', this.#onParent, { once: true });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    this.#controller.abort(reason);
  }

  /** Stops following the parents (call it when the work is done, also after an abort). */
  unlink(): void {
    for (const parent of this.#parents) parent.removeEventListener('abort', this.#onParent);
  }
}

/**
 * A signal that aborts when any of `signals` does, with `unlink` to stop following them: a
 * LinkedAbort when every signal may be followed by a listener, else `AbortSignal.any`.
 */
export function combineSignals(...signals: AbortSignal[]): { signal: AbortSignal; unlink: () => void } {
  if (signals.every((s) => linkable.has(s))) {
    const linked = new LinkedAbort(...signals);
    return { signal: linked.signal, unlink: () => linked.unlink() };
  }
  return { signal: AbortSignal.any(signals), unlink: () => {} };
}
