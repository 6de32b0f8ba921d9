/**
 * The listener methods of a Node `EventEmitter`, over one made when the first listener is
 * added. A `Lease` is made per acquire and most are released without anyone listening; an
 * `EventEmitter` constructor makes a dictionary-mode object for its listeners each time, about
 * a tenth of what a sequential acquire and release on `memory:` allocated (sampling heap
 * profiler). `events.once(lease, 'lost')` and `events.on(...)` work on it as on an emitter;
 * unlike on an emitter, a `function` listener's `this` is the inner emitter, not this object.
 */
import { EventEmitter } from 'node:events';

type Events<E> = { [K in keyof E]: unknown[] };
type Name<E> = keyof E & string;
type Listener<E extends Events<E>, K extends keyof E> = (...args: E[K]) => void;

export class LazyEmitter<E extends Events<E>> {
  #emitter: EventEmitter | null = null;

  #made(): EventEmitter {
    this.#emitter ??= new EventEmitter();
    return this.#emitter;
  }

  on<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    this.#made().on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  addListener<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    return this.on(event, listener);
  }

  once<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    this.#made().once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  prependListener<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    this.#made().prependListener(event, listener as (...args: unknown[]) => void);
    return this;
  }

  prependOnceListener<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    this.#made().prependOnceListener(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    this.#emitter?.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  removeListener<K extends Name<E>>(event: K, listener: Listener<E, K>): this {
    return this.off(event, listener);
  }

  removeAllListeners(event?: Name<E>): this {
    if (event === undefined) this.#emitter?.removeAllListeners();
    else this.#emitter?.removeAllListeners(event);
    return this;
  }

  setMaxListeners(n: number): this {
    this.#made().setMaxListeners(n);
    return this;
  }

  getMaxListeners(): number {
    return this.#emitter?.getMaxListeners() ?? EventEmitter.defaultMaxListeners;
  }

  listenerCount(event: Name<E>): number {
    return this.#emitter === null ? 0 : this.#emitter.listenerCount(event);
  }

  listeners<K extends Name<E>>(event: K): Array<Listener<E, K>> {
    return (this.#emitter?.listeners(event) ?? []) as Array<Listener<E, K>>;
  }

  rawListeners<K extends Name<E>>(event: K): Array<Listener<E, K>> {
    return (this.#emitter?.rawListeners(event) ?? []) as Array<Listener<E, K>>;
  }

  eventNames(): Array<Name<E>> {
    return (this.#emitter?.eventNames() ?? []) as Array<Name<E>>;
  }

  /** Calls the listeners of `event`; true when it had any. An `error` with none throws, as on an emitter. */
  emit<K extends Name<E>>(event: K, ...args: E[K]): boolean {
    if (this.#emitter === null) {
      if (event === 'error') throw args[0] instanceof Error ? args[0] : new Error(`Unhandled error: ${String(args[0])}`);
      return false;
    }
    return this.#emitter.emit(event, ...args);
  }
}
