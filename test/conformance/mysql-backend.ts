/**
 * The conformance suite's `mysql://` backend: every test gets a new database `hf_conf_<random>`
 * on the server the URL names (created here, dropped afterwards), migrated once before the test
 * opens its objects. Objects get 4 pool connections each (several objects per test and four test
 * files at once stay well inside the server's `max_connections`).
 */
import { openLocks, openStore, type Locks, type LocksOptions, type LockStore } from '../../src/index.js';
import { createMysqlDatabase } from '../stores/mysql/helpers.js';

export { DEFAULT_MYSQL_URL } from '../stores/mysql/helpers.js';

const MYSQL_POOL_SIZE = 4;

export interface MysqlBackend {
  rawStore(): Promise<LockStore>;
  openLocks(options: LocksOptions): Promise<Locks>;
  dispose(): Promise<void>;
}

export async function mysqlBackend(url: string, wrap: (store: LockStore) => LockStore): Promise<MysqlBackend> {
  const database = await createMysqlDatabase(url, 'hf_conf');
  const storeOptions = { poolSize: MYSQL_POOL_SIZE };
  try {
    await (await openStore(database.url, storeOptions)).close();
  } catch (error) {
    await database.drop().catch(() => {});
    throw error;
  }
  return {
    rawStore: async () => wrap(await openStore(database.url, storeOptions)),
    openLocks: (options) => openLocks(database.url, { ...options, storeOptions: { ...storeOptions, ...options.storeOptions } }),
    dispose: () => database.drop(),
  };
}
