export { FENCING_DEFAULTS, type FencedResult, type FencedWriteOptions } from './result.js';
export { fencedWritePostgres, ensurePostgresFenceTable, type PgPoolLike, type PgClientLike } from './postgres.js';
export { fencedWriteMysql, ensureMysqlFenceTable, type MysqlPoolLike, type MysqlConnectionLike } from './mysql.js';
export { fencedSetRedis, FENCED_SET_LUA, type RedisEvalLike, type RedisFencedSetOptions } from './redis.js';
export { fencedWriteSqlite, ensureSqliteFenceTable, type SqliteDatabaseLike } from './sqlite.js';
