/** Options of the `etcd://` store: defaults in one frozen object, validation naming the field. */
import { typeName } from '../../model/duration.js';
import { InvalidRequestError } from '../../model/errors.js';

export interface EtcdStoreOptions {
  /**
   * Every key of the store starts with this (a namespace: stores with different prefixes share
   * nothing). 1 to 200 bytes, no control characters. A path in the URL
   * (`etcd://host:2379/team-a`) gives `team-a/`; this option wins over it.
   * @default 'holdfast/'
   */
  prefix?: string | undefined;
  /**
   * How long one call to one etcd member may take before the member is left for the next one.
   * 100 to 600000 ms.
   * @default 2000
   */
  requestTimeoutMs?: number | undefined;
  /**
   * How long one operation keeps trying (other members, conflicts with other clients, an
   * election) before it fails with STORE_UNAVAILABLE. 100 to 600000 ms.
   * @default 10000
   */
  operationTimeoutMs?: number | undefined;
  /**
   * End expired leases and dead waiters from this process at the next due time it knows of
   * (its own writes and every other client's, seen through the watch), so hand-offs on expiry
   * need no poll. Several processes may all do it; each item is settled once.
   * @default true
   */
  autoSweep?: boolean | undefined;
  /**
   * How many history events to keep (older ones are deleted by range, about every tenth of
   * this). 100 to 10000000.
   * @default 10000
   */
  historyLimit?: number | undefined;
}

export const ETCD_DEFAULTS = Object.freeze({
  prefix: 'holdfast/',
  requestTimeoutMs: 2000,
  operationTimeoutMs: 10_000,
  autoSweep: true,
  historyLimit: 10_000,
});

export interface ResolvedEtcdOptions {
  endpoints: string[];
  prefix: string;
  requestTimeoutMs: number;
  operationTimeoutMs: number;
  autoSweep: boolean;
  historyLimit: number;
}

const OPTION_NAMES = new Set(Object.keys(ETCD_DEFAULTS));

function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(field, `expected an integer ${min}..${max}, got ${typeName(value)}`);
  }
  return value;
}

/** `etcd://host:2379[,host2:2379,...][/prefix]` into its members and prefix. */
export function parseEtcdUrl(url: string): { endpoints: string[]; prefix: string | undefined } {
  const match = /^etcd:\/\/([^/?#]+)(\/[^?#]*)?$/i.exec(url);
  if (!match) throw new InvalidRequestError('url', `expected etcd://host:port[,host:port...][/prefix], got ${JSON.stringify(url.slice(0, 80))}`);
  const endpoints = match[1]!.split(',').map((e) => e.trim());
  for (const endpoint of endpoints) {
    const port = /:(\d{1,5})$/.exec(endpoint)?.[1];
    if (port === undefined || Number(port) < 1 || Number(port) > 65535 || endpoint.length <= port.length + 1) {
      throw new InvalidRequestError('url', `expected host:port for each etcd member, got ${JSON.stringify(endpoint)}`);
    }
  }
  const path = match[2] === undefined ? '' : decodeURIComponent(match[2].slice(1));
  return { endpoints, prefix: path.length === 0 ? undefined : path.endsWith('/') ? path : `${path}/` };
}

/** Fills in defaults and checks every option, naming the bad one. */
export function resolveEtcdOptions(url: string, options: EtcdStoreOptions = {}): ResolvedEtcdOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError('options', `expected an object, got ${typeName(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new InvalidRequestError(`options.${name}`, 'unknown option of the etcd store');
  }
  const parsed = parseEtcdUrl(url);
  const prefix = options.prefix ?? parsed.prefix ?? ETCD_DEFAULTS.prefix;
  if (typeof prefix !== 'string') throw new InvalidRequestError('options.prefix', `expected a string, got ${typeName(prefix)}`);
  const bytes = Buffer.byteLength(prefix, 'utf8');
  if (bytes < 1 || bytes > 200) throw new InvalidRequestError('options.prefix', `expected 1..200 bytes, got ${bytes}`);
  if (/[\u0000-\u001f\u007f]/.test(prefix)) throw new InvalidRequestError('options.prefix', 'control characters are not allowed');
  const autoSweep = options.autoSweep ?? ETCD_DEFAULTS.autoSweep;
  if (typeof autoSweep !== 'boolean') throw new InvalidRequestError('options.autoSweep', `expected true or false, got ${typeName(autoSweep)}`);
  return {
    endpoints: parsed.endpoints,
    prefix,
    requestTimeoutMs: integerIn(options.requestTimeoutMs ?? ETCD_DEFAULTS.requestTimeoutMs, 'options.requestTimeoutMs', 100, 600_000),
    operationTimeoutMs: integerIn(options.operationTimeoutMs ?? ETCD_DEFAULTS.operationTimeoutMs, 'options.operationTimeoutMs', 100, 600_000),
    autoSweep,
    historyLimit: integerIn(options.historyLimit ?? ETCD_DEFAULTS.historyLimit, 'options.historyLimit', 100, 10_000_000),
  };
}
