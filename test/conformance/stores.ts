/**
 * The store matrix of the conformance suite. Every conformance file calls `describeEachStore`,
 * which runs its tests once per store of the matrix, each test on a fresh, isolated store:
 *
 *   memory     a new store object (several `Locks` objects share it through a non-closing wrapper)
 *   sqlite     a new file in its own temp dir, removed afterwards
 *   postgres   a new schema `hf_conf_<random>`, dropped afterwards (4 pool connections per object)
 *   postgres+pgbouncer
 *              the same through a PgBouncer in transaction pooling mode (4 server connections
 *              shared by every object of the test file; LISTEN goes to the server directly, as
 *              `listenUrl` lets a deployment do), started once per test file
 *   mysql      a new database `hf_conf_<random>`, dropped afterwards (mysql-backend.ts; `mysql` alone
 *              means `HOLDFAST_MYSQL_URL`, default mysql://root@127.0.0.1:3306/test)
 *   redis      a random namespace (`?prefix=conf-<random>`) on the named Redis (`redis` alone:
 *              redis://127.0.0.1:6379/0), its keys deleted afterwards; not durable (the shared
 *              Redis has no persistence; test/stores/redis/ restarts Redis servers of its own)
 *   http+memory, http+sqlite
 *              a holdfast server (`buildServer`, on an ephemeral port of 127.0.0.1) over a new
 *              memory store or a new SQLite file; the `Locks` objects talk to it over HTTP
 *
 * `HOLDFAST_CONFORMANCE_STORES` (comma-separated kinds or URLs: `memory,sqlite`,
 * `postgres://127.0.0.1/test`) narrows the matrix; by default it is memory, sqlite, postgres
 * (at `HOLDFAST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
 * postgres+pgbouncer, mysql (at `HOLDFAST_MYSQL_URL`), etcd, http+memory and http+sqlite.
 * `etcd://host:port,host:port,...` is one entry (a key prefix per test on that cluster); bare
 * `etcd` starts a 3-member cluster per test file. A store of the
 * matrix that `openLocks` cannot open (for example an unregistered scheme) fails its tests; it is
 * never skipped.
 *
 * Stores are opened only through the public API (`openLocks`, `openStore`), never by importing a
 * store module.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe } from 'node:test';
import { buildServer, openLocks, openStore, type Locks, type LocksOptions, type LockStore } from '../../src/index.js';
import { EtcdCluster } from '../stores/etcd/cluster.js';
import { startPgBouncer, type PgBouncer } from '../stores/postgres/pgbouncer.js';
import { ForwardingStore } from './forwarding-store.js';
import { DEFAULT_MYSQL_URL, mysqlBackend } from './mysql-backend.js';
import { redisNamespace } from './redis-backend.js';

export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379/0';

/** Per-test timeout: a test that hangs fails instead of holding the run. */
export const TIMEOUT = { timeout: 60_000 } as const;

export interface StoreEntry {
  /** `memory`, `sqlite`, `postgres`, or the scheme of an unknown URL. */
  kind: string;
  /** The URL the entry was given as (postgres), or the kind. */
  url: string;
  /** Shown in test names. */
  label: string;
  /** Leases, queue and fence counter survive a restart. */
  durable: boolean;
}

const DURABLE = new Set(['sqlite', 'postgres', 'mysql', 'etcd']);

function entryOf(spec: string): StoreEntry {
  const postgresUrl = process.env['HOLDFAST_POSTGRES_URL'] || DEFAULT_POSTGRES_URL;
  const lower = spec.toLowerCase();
  if (lower === 'memory' || lower.startsWith('memory:')) return { kind: 'memory', url: 'memory:', label: 'memory', durable: false };
  if (lower === 'sqlite' || lower.startsWith('sqlite:')) return { kind: 'sqlite', url: 'sqlite:', label: 'sqlite', durable: true };
  if (lower === 'postgres' || lower === 'postgresql') return { kind: 'postgres', url: postgresUrl, label: 'postgres', durable: true };
  if (lower.startsWith('postgres://') || lower.startsWith('postgresql://')) return { kind: 'postgres', url: spec, label: 'postgres', durable: true };
  if (lower === 'postgres+pgbouncer') return { kind: 'postgres', url: postgresUrl, label: 'postgres+pgbouncer', durable: true };
  if (lower === 'mysql' || lower === 'mariadb') {
    return { kind: 'mysql', url: process.env['HOLDFAST_MYSQL_URL'] || DEFAULT_MYSQL_URL, label: 'mysql', durable: true };
  }
  if (lower.startsWith('mysql://') || lower.startsWith('mariadb://')) return { kind: 'mysql', url: spec, label: 'mysql', durable: true };
  if (lower === 'http+memory' || lower === 'http+sqlite') return { kind: 'http', url: lower, label: lower, durable: lower === 'http+sqlite' };
  const kind = /^([a-z][a-z0-9+.-]*)(:|$)/i.exec(spec)?.[1]?.toLowerCase() ?? spec;
  return { kind, url: spec, label: kind, durable: DURABLE.has(kind) };
}

/** The stores to run against, from `HOLDFAST_CONFORMANCE_STORES` or the default matrix. */
export function storeMatrix(): StoreEntry[] {
  const raw = process.env['HOLDFAST_CONFORMANCE_STORES'];
  const specs = raw === undefined || raw.trim() === '' ? ['memory', 'sqlite', 'postgres', 'postgres+pgbouncer', 'mysql', 'etcd', 'redis', 'http+memory', 'http+sqlite'] : raw.split(',').map((s) => s.trim()).filter(Boolean);
  return joinEtcdMembers(specs).map(entryOf);
}

/** `etcd://a:1,b:2,c:3` names one store: the `host:port` pieces after an etcd URL belong to it. */
function joinEtcdMembers(specs: string[]): string[] {
  const out: string[] = [];
  for (const spec of specs) {
    const last = out[out.length - 1];
    if (last !== undefined && /^etcd:\/\/[^/]*$/i.test(last) && /^[^:/]+:\d+(\/.*)?$/.test(spec)) out[out.length - 1] = `${last},${spec}`;
    else out.push(spec);
  }
  return out;
}

/** How a test reaches its store. */
export interface StoreContext {
  readonly kind: string;
  readonly label: string;
  /** The store keeps leases, queue and fences across `reopen()`. */
  readonly durable: boolean;
  /**
   * Opens another `Locks` object on the current test's store (another "process"). Defaults:
   * `owner: 'conformance'`, `actor: 'conformance-admin'`, `waiterTtlMs: 3000`. With `wrap`, the
   * `Locks` object runs over `wrap(store)` (a proxy that injects faults or counts calls).
   * Every object opened here is closed after the test.
   */
  open(options?: LocksOptions, wrap?: (store: LockStore) => LockStore): Promise<Locks>;
  /** Opens another raw store object on the current test's store (closed after the test). */
  openStore(): Promise<LockStore>;
  /**
   * Durable stores only: a restart. Every object opened so far is dropped *without* releasing or
   * cancelling anything (its store connection is closed first, as if the process died), then a
   * new `Locks` object is opened on the same file or schema.
   */
  reopen(options?: LocksOptions): Promise<Locks>;
}

/** The underlying store of one test. */
interface Backend {
  /** A new store object on the test's store. */
  rawStore(): Promise<LockStore>;
  /** A new `Locks` object on the test's store, opened by URL where the store has one. */
  openLocks(options: LocksOptions): Promise<Locks>;
  dispose(): Promise<void>;
}

/** A store object whose `close` runs once (the suite may close what a `Locks` object closed). */
class OnceClosingStore extends ForwardingStore {
  #closing: Promise<void> | null = null;
  override close(): Promise<void> {
    this.#closing ??= this.inner.close();
    return this.#closing;
  }
}

/** The memory store shared by several `Locks` objects: closing one of them leaves it open. */
class SharedMemoryStore extends ForwardingStore {
  override async close(): Promise<void> {}
}

async function memoryBackend(): Promise<Backend> {
  const anchor = await openStore('memory:');
  return {
    rawStore: async () => new SharedMemoryStore(anchor),
    openLocks: (options) => openLocks(new SharedMemoryStore(anchor), options),
    dispose: () => anchor.close(),
  };
}

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-conformance-'));
  const url = `sqlite:${join(dir, 'locks.db')}`;
  try {
    // Creates and migrates the file once, so objects opened at the same moment do not race on it.
    await (await openStore(url)).close();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    rawStore: async () => new OnceClosingStore(await openStore(url)),
    openLocks: (options) => openLocks(url, options),
    dispose: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * Connections per postgres store object: several objects per test and four test files at once
 * must stay well inside the server's `max_connections` (100 by default).
 */
const POSTGRES_POOL_SIZE = 4;

async function postgresBackend(url: string): Promise<Backend> {
  const schema = `hf_conf_${randomBytes(6).toString('hex')}`;
  const storeOptions = { schema, poolSize: POSTGRES_POOL_SIZE };
  try {
    await (await openStore(url, storeOptions)).close();
  } catch (error) {
    await dropSchema(url, schema).catch(() => {});
    throw error;
  }
  return {
    rawStore: async () => new OnceClosingStore(await openStore(url, storeOptions)),
    openLocks: (options) => openLocks(url, { ...options, storeOptions: { ...storeOptions, ...options.storeOptions } }),
    dispose: () => dropSchema(url, schema),
  };
}

/** The test file's PgBouncer, started on first use and stopped after the last `describe` that used it. */
let bouncer: Promise<PgBouncer> | null = null;

async function stopBouncer(): Promise<void> {
  const running = bouncer;
  bouncer = null;
  if (running !== null) await (await running).stop();
}

/** As postgresBackend, every call through the proxy; only the LISTEN connection goes to the server. */
async function pgbouncerBackend(url: string): Promise<Backend> {
  if (bouncer === null) {
    bouncer = startPgBouncer(url);
    bouncer.catch(() => (bouncer = null));
  }
  const proxy = await bouncer;
  const schema = `hf_conf_${randomBytes(6).toString('hex')}`;
  const storeOptions = { schema, poolSize: POSTGRES_POOL_SIZE, listenUrl: url };
  try {
    await (await openStore(proxy.url, storeOptions)).close();
  } catch (error) {
    await dropSchema(url, schema).catch(() => {});
    throw error;
  }
  return {
    rawStore: async () => new OnceClosingStore(await openStore(proxy.url, storeOptions)),
    openLocks: (options) => openLocks(proxy.url, { ...options, storeOptions: { ...storeOptions, ...options.storeOptions } }),
    dispose: () => dropSchema(url, schema),
  };
}

/** A random namespace (`?prefix=`) on the Redis at `url`, its keys deleted afterwards. */
async function redisBackend(url: string): Promise<Backend> {
  const namespace = redisNamespace(url);
  return {
    rawStore: async () => new OnceClosingStore(await openStore(namespace.url)),
    openLocks: (options) => openLocks(namespace.url, options),
    dispose: () => namespace.drop(),
  };
}

/**
 * A holdfast server of its own over a new memory store or SQLite file, on an ephemeral port.
 * A `reopen()` drops the clients (their connections closed first); the server and its store go on.
 */
async function httpBackend(inner: 'memory' | 'sqlite'): Promise<Backend> {
  const dir = inner === 'sqlite' ? mkdtempSync(join(tmpdir(), 'holdfast-conformance-http-')) : null;
  const remove = (): void => {
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  };
  let app: Awaited<ReturnType<typeof buildServer>>;
  try {
    app = await buildServer({ store: dir === null ? 'memory:' : `sqlite:${join(dir, 'locks.db')}`, logLevel: 'silent' });
    await app.listen({ host: '127.0.0.1', port: 0 });
  } catch (error) {
    remove();
    throw error;
  }
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  return {
    rawStore: async () => new OnceClosingStore(await openStore(url)),
    openLocks: (options) => openLocks(url, options),
    dispose: async () => {
      await app.close();
      remove();
    },
  };
}

/** The test file's etcd cluster (for the bare `etcd` entry), started on first use, stopped after the last `describe`. */
let etcdCluster: Promise<EtcdCluster> | null = null;

async function stopEtcdCluster(): Promise<void> {
  const running = etcdCluster;
  etcdCluster = null;
  if (running !== null) await (await running).destroy();
}

/**
 * etcd: a key prefix `hf-conf-<random>/` of its own per test on the cluster the URL names (or,
 * for the bare `etcd` entry, on a 3-member cluster this test file starts), deleted afterwards.
 */
async function etcdBackend(url: string): Promise<Backend> {
  if (url === 'etcd') {
    if (etcdCluster === null) {
      etcdCluster = EtcdCluster.start();
      etcdCluster.catch(() => (etcdCluster = null));
    }
    url = (await etcdCluster).url;
  }
  const storeOptions = { prefix: `hf-conf-${randomBytes(6).toString('hex')}/` };
  const anchor = await openStore(url, storeOptions);
  return {
    rawStore: async () => new OnceClosingStore(await openStore(url, storeOptions)),
    openLocks: (options) => openLocks(url, { ...options, storeOptions: { ...storeOptions, ...options.storeOptions } }),
    dispose: async () => {
      await anchor.close();
      await deleteEtcdPrefix(url, storeOptions.prefix);
    },
  };
}

async function deleteEtcdPrefix(url: string, prefix: string): Promise<void> {
  const member = /^etcd:\/\/([^,/]+)/i.exec(url)?.[1];
  const start = Buffer.from(prefix);
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  await fetch(`http://${member}/v3/kv/deleterange`, {
    method: 'POST',
    body: JSON.stringify({ key: start.toString('base64'), range_end: end.toString('base64') }),
  });
}

async function openBackend(entry: StoreEntry): Promise<Backend> {
  try {
    switch (entry.kind) {
      case 'memory':
        return await memoryBackend();
      case 'sqlite':
        return await sqliteBackend();
      case 'postgres':
        return entry.label === 'postgres+pgbouncer' ? await pgbouncerBackend(entry.url) : await postgresBackend(entry.url);
      case 'mysql':
        return await mysqlBackend(entry.url, (store) => new OnceClosingStore(store));
      case 'etcd':
        return await etcdBackend(entry.url);
      case 'redis':
        return await redisBackend(entry.url === 'redis' ? DEFAULT_REDIS_URL : entry.url);
      case 'http':
        return await httpBackend(entry.url === 'http+sqlite' ? 'sqlite' : 'memory');
      default:
        throw new Error('the conformance suite has no isolation recipe for this kind yet (add one in test/conformance/stores.ts)');
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `The conformance matrix names store "${entry.label}" (${entry.url}) but it cannot be opened: ${reason}. ` +
        'Narrow the matrix with HOLDFAST_CONFORMANCE_STORES to leave it out.',
      { cause: error },
    );
  }
}

const DEFAULT_OPTIONS: LocksOptions = { owner: 'conformance', actor: 'conformance-admin', waiterTtlMs: 3000 };

/** Resources of one test: every object opened, closed in `afterEach`. */
class Session {
  readonly locks = new Set<Locks>();
  readonly stores = new Set<LockStore>();
  constructor(readonly backend: Backend) {}

  /** Closes everything. `crash`: close store connections first, so nothing is released or cancelled. */
  async closeAll(crash: boolean): Promise<void> {
    const locks = [...this.locks];
    const stores = [...this.stores];
    this.locks.clear();
    this.stores.clear();
    if (crash) await Promise.allSettled([...locks.map((l) => l.store.close()), ...stores.map((s) => s.close())]);
    await Promise.allSettled(locks.map((l) => l.close()));
    await Promise.allSettled(stores.map((s) => s.close()));
  }
}

/** Runs `body` once per store of the matrix, in a `describe` named `title [kind]`. */
export function describeEachStore(title: string, body: (ctx: StoreContext) => void): void {
  for (const entry of storeMatrix()) {
    describe(`${title} [${entry.label}]`, () => {
      let session: Session | null = null;
      const current = (): Session => {
        if (session === null) throw new Error('no store: the store context is only usable inside a test');
        return session;
      };

      const cleanUp = async (): Promise<void> => {
        const s = session;
        session = null;
        if (s === null) return;
        await s.closeAll(false);
        await s.backend.dispose();
      };
      afterEach(cleanUp);
      // In case a test ended without its afterEach (a skipped or cancelled test).
      after(cleanUp);
      if (entry.label === 'postgres+pgbouncer') after(stopBouncer);
      if (entry.url === 'etcd') after(stopEtcdCluster);
      beforeEach(async () => {
        await cleanUp();
        session = new Session(await openBackend(entry));
      });

      const ctx: StoreContext = {
        kind: entry.kind,
        label: entry.label,
        durable: entry.durable,
        async open(options = {}, wrap) {
          const s = current();
          const merged = { ...DEFAULT_OPTIONS, ...options };
          let locks: Locks;
          if (wrap) {
            const raw = await s.backend.rawStore();
            s.stores.add(raw);
            locks = await openLocks(wrap(raw), merged);
          } else {
            locks = await s.backend.openLocks(merged);
          }
          s.locks.add(locks);
          return locks;
        },
        async openStore() {
          const s = current();
          const store = await s.backend.rawStore();
          s.stores.add(store);
          return store;
        },
        async reopen(options = {}) {
          if (!entry.durable) throw new Error(`store "${entry.label}" is not durable: reopen() is for durable stores`);
          await current().closeAll(true);
          return ctx.open(options);
        },
      };
      body(ctx);
    });
  }
}
