/** Options of the `redis://` store: defaults in one frozen object, validation naming the field. */
import { typeName } from '../../model/duration.js';
import { InvalidRequestError } from '../../model/errors.js';
import { booleanOption, integerIn } from '../../model/option-checks.js';

export interface RedisStoreOptions {
  /**
   * The namespace: every key of the store is `hf:{<prefix>}:...`, one hash tag, so a Redis
   * Cluster keeps them in one slot and every operation stays atomic. Also `?prefix=` in the URL.
   * 1 to 128 printable characters, no `{`, `}` or whitespace.
   * @default 'holdfast'
   */
  prefix?: string | undefined;
  /**
   * How many history events to keep (the newest).
   * @default 10000
   */
  historyLimit?: number | undefined;
  /**
   * After each operation that may grant a lease, `WAIT` until this many replicas have received
   * it; a grant that fewer replicas acknowledged within `replicaTimeoutMs` is released again and
   * the call fails with STORE_UNAVAILABLE (so a promoted replica knows every lease it reported).
   * 0 to 16; 0 sends no `WAIT`.
   * @default 0
   */
  replicas?: number | undefined;
  /**
   * How long the `WAIT` for `replicas` may take. 1 to 60000 ms.
   * @default 1000
   */
  replicaTimeoutMs?: number | undefined;
  /**
   * Connections for operations (the inbox reader has one more, from the first queued ticket). An
   * operation goes on the one with the fewest calls in flight; with two, Redis runs one
   * connection's calls while this process handles the other's answers. 1 to 16.
   * @default 2
   */
  connections?: number | undefined;
  /**
   * How long opening may take before it fails with STORE_UNAVAILABLE: connecting, and waiting
   * for a Redis that has just started and answers LOADING while it reads its AOF or RDB.
   * 100 to 600000 ms.
   * @default 5000
   */
  connectTimeoutMs?: number | undefined;
  /**
   * The longest delay between two reconnect attempts (they start at 50 ms and double).
   * 10 to 600000 ms.
   * @default 2000
   */
  reconnectMaxMs?: number | undefined;
  /**
   * End expired leases and dead waiters from this process at the next due time known to it (a
   * timer, unref'd), so hand-offs on expiry need no poll. Several processes may all do it; the
   * store settles each item once.
   * @default true
   */
  autoSweep?: boolean | undefined;
  /**
   * What `info.durable` says. By default it is read from the server when the store opens: true
   * when AOF is on with `appendfsync always` (`CONFIG GET`; false when CONFIG is refused).
   * @default undefined (read from the server)
   */
  durable?: boolean | undefined;
}

export const REDIS_DEFAULTS = Object.freeze({
  prefix: 'holdfast',
  historyLimit: 10_000,
  replicas: 0,
  replicaTimeoutMs: 1000,
  connections: 2,
  connectTimeoutMs: 5000,
  reconnectMaxMs: 2000,
  autoSweep: true,
  durable: undefined,
});

export interface ResolvedRedisOptions {
  prefix: string;
  historyLimit: number;
  replicas: number;
  replicaTimeoutMs: number;
  connections: number;
  connectTimeoutMs: number;
  reconnectMaxMs: number;
  autoSweep: boolean;
  durable: boolean | undefined;
}

const OPTION_NAMES = new Set(Object.keys(REDIS_DEFAULTS));

export function validatePrefix(value: unknown, field = 'options.prefix'): string {
  if (typeof value !== 'string') throw new InvalidRequestError(field, `expected a string, got ${typeName(value)}`);
  if (!/^[\x21-\x7a\x7c\x7e]{1,128}$/.test(value)) {
    throw new InvalidRequestError(field, `expected 1..128 printable ASCII characters without "{", "}" or spaces, got ${JSON.stringify(value.slice(0, 40))}`);
  }
  return value;
}

/** Fills in defaults and checks every option, naming the bad one. */
export function resolveRedisOptions(options: RedisStoreOptions = {}): ResolvedRedisOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown option of the redis store');
  }
  const durable = options.durable ?? REDIS_DEFAULTS.durable;
  return {
    prefix: validatePrefix(options.prefix ?? REDIS_DEFAULTS.prefix),
    historyLimit: integerIn(options.historyLimit ?? REDIS_DEFAULTS.historyLimit, 'options.historyLimit', 100, 10_000_000),
    replicas: integerIn(options.replicas ?? REDIS_DEFAULTS.replicas, 'options.replicas', 0, 16),
    replicaTimeoutMs: integerIn(options.replicaTimeoutMs ?? REDIS_DEFAULTS.replicaTimeoutMs, 'options.replicaTimeoutMs', 1, 60_000),
    connections: integerIn(options.connections ?? REDIS_DEFAULTS.connections, 'options.connections', 1, 16),
    connectTimeoutMs: integerIn(options.connectTimeoutMs ?? REDIS_DEFAULTS.connectTimeoutMs, 'options.connectTimeoutMs', 100, 600_000),
    reconnectMaxMs: integerIn(options.reconnectMaxMs ?? REDIS_DEFAULTS.reconnectMaxMs, 'options.reconnectMaxMs', 10, 600_000),
    autoSweep: booleanOption(options.autoSweep ?? REDIS_DEFAULTS.autoSweep, 'options.autoSweep'),
    durable: durable === undefined ? undefined : booleanOption(durable, 'options.durable'),
  };
}
