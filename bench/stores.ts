/**
 * The stores a benchmark runs on, each behind counting proxies:
 *
 *   memory     one store object; every `Locks` object opened on it shares it
 *   sqlite     a new file in a temp dir (removed afterwards); every `Locks` object has its own
 *              store object on the file, as separate processes would (same process though, so
 *              wake-ups reach them all)
 *   postgres   a fresh schema `hf_bench_<random>` (dropped afterwards); every `Locks` object has
 *              its own pool and LISTEN connection, as separate processes would
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openMysqlTarget } from './mysql-target.js';
import { openLocks, openStore, type Locks, type LocksOptions, type LockStore } from '../src/index.js';
import { CallCounter, CountingStore, countingPool, type CountingOptions } from './counting.js';
import { SkipError, type BenchContext, type StoreKind } from './harness.js';

export interface OpenOptions extends LocksOptions {
  observe?: CountingOptions['observe'];
}

export interface Target {
  readonly kind: StoreKind;
  /** Store calls of every `Locks` object opened here (what the engine sends). */
  readonly calls: CallCounter;
  /** Postgres only: SQL queries sent by the store objects (including their follow-ups and sweeps). */
  readonly sql: CallCounter | null;
  /** SQLite only: the database file. */
  readonly file?: string;
  /** Opens another `Locks` object (another "process") on this store. */
  open(options?: OpenOptions): Promise<Locks>;
  /** Makes every operation fail at once (the store is "gone"), so that hundreds of waiters end fast. */
  takeDown(): void;
  /** Closes every `Locks` object opened here and removes the file or schema. */
  close(): Promise<void>;
}

export interface TargetOptions {
  /** SQLite `synchronous`. @default the store's default ('FULL') */
  synchronous?: 'NORMAL' | 'FULL';
  /** Postgres pool size of each store object. @default 10 */
  poolSize?: number;
}

export const POOL_SIZE = 10;

/** Connects once to check the server is there; returns its version. Throws SkipError if not. */
export async function postgresVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
    return rows[0]?.v ?? 'unknown';
  } catch (error) {
    throw new SkipError(`PostgreSQL at ${redact(url)} is unreachable: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

/** Schemas this process created and has not dropped yet, with their server's URL. */
const liveSchemas = new Map<string, string>();

export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    liveSchemas.delete(schema);
  } finally {
    await client.end().catch(() => {});
  }
}

/** A fresh schema name on `url`, remembered until dropped (see `dropLiveSchemas`). */
export function newSchema(url: string): string {
  const schema = `hf_bench_${randomBytes(5).toString('hex')}`;
  liveSchemas.set(schema, url);
  return schema;
}

/** Drops every schema this process created and has not dropped yet (on Ctrl-C). */
export async function dropLiveSchemas(): Promise<string[]> {
  const left = [...liveSchemas];
  await Promise.allSettled(left.map(([schema, url]) => dropSchema(url, schema)));
  return left.map(([schema]) => schema).filter((schema) => liveSchemas.has(schema));
}

export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-bench-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const LOCKS_DEFAULTS: LocksOptions = { owner: 'bench', actor: 'bench-admin' };

export async function openTarget(ctx: BenchContext, kind: StoreKind, options: TargetOptions = {}): Promise<Target> {
  const calls = new CallCounter();
  const gate = { down: false };
  const takeDown = (): void => {
    gate.down = true;
  };
  const opened: Locks[] = [];
  const track = async (store: LockStore, open: OpenOptions, onClose?: () => Promise<void>): Promise<Locks> => {
    const { observe, ...locksOptions } = open;
    const counting = new CountingStore(store, calls, {
      closeInner: kind !== 'memory', gate, ...(observe ? { observe } : {}), ...(onClose ? { onClose } : {}),
    });
    const locks = await openLocks(counting, {
      ...LOCKS_DEFAULTS,
      ...locksOptions,
    });
    opened.push(locks);
    return locks;
  };
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(opened.splice(0).map((l) => l.close()));
  };

  if (kind === 'memory') {
    const anchor = await openStore('memory:');
    return {
      kind, calls, sql: null, takeDown,
      open: (o = {}) => track(anchor, o),
      close: async () => {
        await closeAll();
        await anchor.close();
      },
    };
  }

  if (kind === 'sqlite') {
    const tmp = tempDir();
    const file = join(tmp.dir, 'locks.db');
    const url = `sqlite:${file}`;
    const storeOptions = options.synchronous ? { synchronous: options.synchronous } : {};
    try {
      await (await openStore(url, storeOptions)).close(); // create and migrate once
    } catch (error) {
      tmp.remove();
      throw error;
    }
    return {
      kind, calls, sql: null, file, takeDown,
      open: async (o = {}) => track(await openStore(url, storeOptions), o),
      close: async () => {
        await closeAll();
        tmp.remove();
      },
    };
  }

  if (kind === 'mysql') return openMysqlTarget(track, closeAll, { kind, calls, takeDown }, options.poolSize ?? POOL_SIZE);

  const url = ctx.postgresUrl;
  ctx.rec.meta['postgres'] ??= await postgresVersion(url);
  const schema = newSchema(url);
  const sql = new CallCounter();
  // Each store object gets its own pool (the store never ends a pool it was given: we do).
  const pools = new Set<pg.Pool>();
  const endPool = async (pool: pg.Pool): Promise<void> => {
    if (pools.delete(pool)) await pool.end().catch(() => {});
  };
  const openPg = async (): Promise<{ store: LockStore; pool: pg.Pool }> => {
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? POOL_SIZE, connectionTimeoutMillis: 5000, allowExitOnIdle: true, application_name: 'holdfast-bench' });
    pool.on('error', () => {});
    pools.add(pool);
    const store = await openStore(url, { schema, pool: countingPool(pool, sql) });
    try {
      await (store as LockStore & { ready?: () => Promise<void> }).ready?.();
    } catch (error) {
      await store.close().catch(() => {});
      await endPool(pool);
      throw error;
    }
    return { store, pool };
  };
  const dispose = async (): Promise<void> => {
    await closeAll();
    await Promise.allSettled([...pools].map(endPool));
    await dropSchema(url, schema);
  };
  try {
    const first = await openPg(); // migrates the schema once
    await first.store.close();
    await endPool(first.pool);
  } catch (error) {
    await dispose().catch(() => {});
    throw error;
  }
  return {
    kind, calls, sql, takeDown,
    open: async (o = {}) => {
      const { store, pool } = await openPg();
      return track(store, o, () => endPool(pool));
    },
    close: dispose,
  };
}

/** The stores of `kinds` this run may use, in order. */
export function storesOf(ctx: BenchContext, kinds: readonly StoreKind[]): StoreKind[] {
  return kinds.filter((k) => ctx.stores.has(k));
}
