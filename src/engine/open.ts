/**
 * `openLocks(url, options)`: opens the store a URL names and returns a `Locks` object.
 *   memory:                 in-process, not durable
 *   sqlite:PATH             embedded, durable (`sqlite::memory:` for a throwaway database)
 *   postgres://...          PostgreSQL (also postgresql://; `?schema=NAME`, default holdfast)
 *   mysql://.../database    MySQL or MariaDB (also mariadb://)
 *   etcd://host:port,...    an etcd cluster (`/prefix` optional, default holdfast/)
 *   redis://host:port/N     Redis 7+ (also rediss://; `?prefix=NAME`, default holdfast)
 *   http(s)://host:port     a holdfast server
 * Store modules load on demand, so a store's driver is only required when that store is used.
 */
import { InvalidRequestError } from '../model/errors.js';
import type { LockStore } from '../stores/store.js';
import { Locks } from './locks.js';
import type { LocksOptions } from './options.js';

export type StoreOpener = (url: string, options: Record<string, unknown>) => Promise<LockStore>;

const openers = new Map<string, StoreOpener>();

/** Registers a store for a URL scheme (without the colon), e.g. `registerStore('redis', open)`. */
export function registerStore(scheme: string, opener: StoreOpener): void {
  openers.set(scheme.toLowerCase(), opener);
}

registerStore('memory', async (_url, options) => {
  const { createMemoryStore } = await import('../stores/memory/store.js');
  return createMemoryStore(options);
});

registerStore('sqlite', async (url, options) => {
  const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
  if (path.length === 0) throw new InvalidRequestError('url', 'expected sqlite:PATH, for example sqlite:./holdfast.db');
  const { createSqliteStore } = await import('../stores/sqlite/store.js');
  return createSqliteStore(path, options);
});

/** `postgres://host/db?schema=locks`: the schema may be named in the URL (for the CLI and servers). */
const openPostgres: StoreOpener = async (url, options) => {
  const { createPostgresStore } = await import('../stores/postgres/store.js');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new InvalidRequestError('url', 'expected postgres://user@host:port/database', { cause: error });
  }
  const schema = parsed.searchParams.get('schema');
  if (schema === null) return createPostgresStore(url, options);
  parsed.searchParams.delete('schema');
  return createPostgresStore(parsed.toString(), { ...options, schema });
};
registerStore('postgres', openPostgres);
registerStore('postgresql', openPostgres);

/** `mysql://user@host:3306/database` (also `mariadb://`): MySQL 8.0 or MariaDB 10.11. */
const openMysql: StoreOpener = async (url, options) => {
  const { createMysqlStore } = await import('../stores/mysql/store.js');
  return createMysqlStore(url, options);
};
registerStore('mysql', openMysql);
registerStore('mariadb', openMysql);
/** `redis://host:6379/0?prefix=NAME`: Redis 7+, the namespace named in the URL or `prefix`. */
const openRedis: StoreOpener = async (url, options) => {
  const { createRedisStore } = await import('../stores/redis/store.js');
  return createRedisStore(url, options);
};
registerStore('redis', openRedis);
registerStore('rediss', openRedis);

/** `http(s)://host:port`: the library through a holdfast server. */
const openHttp: StoreOpener = async (url, options) => {
  const { createHttpStore } = await import('../client/http-store.js');
  return createHttpStore(url, options);
};
registerStore('http', openHttp);
registerStore('https', openHttp);

/** `etcd://host:2379[,host2:2379,...][/prefix]`: an etcd cluster (v3 API, through its JSON gateway). */
registerStore('etcd', async (url, options) => {
  const { createEtcdStore } = await import('../stores/etcd/store.js');
  return createEtcdStore(url, options);
});

/** Opens the store named by `url`. */
export async function openStore(url: string, options: Record<string, unknown> = {}): Promise<LockStore> {
  if (typeof url !== 'string' || url.length === 0) throw new InvalidRequestError('url', 'expected a store URL such as memory:, sqlite:./holdfast.db or postgres://host/db');
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  const scheme = match?.[1]?.toLowerCase();
  const opener = scheme === undefined ? undefined : openers.get(scheme);
  if (!opener) {
    throw new InvalidRequestError('url', `unknown store ${JSON.stringify(url.slice(0, 40))}; expected one of ${[...openers.keys()].map((s) => `${s}:`).join(', ')}`);
  }
  return opener(url, options);
}

/** Opens a store by URL (or takes `options.store`) and returns a `Locks` object over it. */
export async function openLocks(url: string | LockStore, options: LocksOptions = {}): Promise<Locks> {
  const given = options.store;
  if (given !== undefined && !isStore(given)) {
    throw new InvalidRequestError('store', 'expected a LockStore object (the options of the store a URL names go in `storeOptions`)');
  }
  const store = typeof url === 'string' ? given ?? (await openStore(url, options.storeOptions ?? {})) : url;
  try {
    return new Locks(store, options);
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
}

function isStore(value: unknown): value is LockStore {
  const store = value as Partial<Record<keyof LockStore, unknown>> | null;
  return typeof store === 'object' && store !== null && typeof store.acquire === 'function' && typeof store.close === 'function';
}
