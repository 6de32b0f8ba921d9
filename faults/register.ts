/**
 * The register: a real resource in PostgreSQL that the workers write under their locks, guarded by
 * the library's `fencedWritePostgres`. It lives in its own schema on a cluster the harness never
 * restarts, apart from the lock store, so a store fault never takes the register down.
 *
 *   <schema>.fences  the fence table of fencedWritePostgres: highest fence accepted per key; a write
 *                    with a lower fence is refused, an equal or higher one accepted
 *   <schema>.log     one row per accepted write, inserted in the same transaction; `seq` follows the
 *                    commit order per key (it is drawn after the fence row is locked)
 *   <schema>.value   the register's current value per key: the last accepted write
 */
import pg from 'pg';
import { ensurePostgresFenceTable, fencedWritePostgres } from '../src/fencing/postgres.js';
import type { Mode } from '../src/model/types.js';
import type { RegisterRow, RegisterValue, RegisterWrite } from './history.js';

export const DEFAULT_REGISTER_URL = 'postgres://postgres@127.0.0.1:5432/test';

export type WriteOutcome = { accepted: true; seq: number } | { accepted: false; highest: number };

export class Register {
  readonly pool: pg.Pool;
  readonly #schema: string;

  constructor(url: string, schema: string, applicationName = 'hf-faults register') {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`register schema: bad identifier ${JSON.stringify(schema)}`);
    this.#schema = schema;
    this.pool = new pg.Pool({ connectionString: url, max: 2, application_name: applicationName, connectionTimeoutMillis: 10_000 });
    this.pool.on('error', () => {});
  }

  /** Creates the schema and its tables (the harness, once per run). */
  async create(): Promise<void> {
    const s = this.#schema;
    await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await ensurePostgresFenceTable(this.pool, `${s}.fences`);
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${s}.log (
      seq bigserial PRIMARY KEY, key text NOT NULL, fence bigint NOT NULL, mode text NOT NULL,
      writer text NOT NULL, lease text NOT NULL, op text NOT NULL UNIQUE)`);
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${s}.value (
      key text PRIMARY KEY, fence bigint NOT NULL, op text NOT NULL, writes bigint NOT NULL)`);
  }

  /** One fenced write of `key`: refused if a higher fence was accepted for it before. */
  async write(input: RegisterWrite): Promise<WriteOutcome> {
    const s = this.#schema;
    const result = await fencedWritePostgres(this.pool, { resource: input.key, fence: input.fence, table: `${s}.fences` }, async (client) => {
      const { rows } = await client.query(
        `INSERT INTO ${s}.log (key, fence, mode, writer, lease, op) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`,
        [input.key, input.fence, input.mode, input.writer, input.lease, input.op],
      );
      await client.query(
        `INSERT INTO ${s}.value AS v (key, fence, op, writes) VALUES ($1, $2, $3, 1)
         ON CONFLICT (key) DO UPDATE SET fence = EXCLUDED.fence, op = EXCLUDED.op, writes = v.writes + 1`,
        [input.key, input.fence, input.op],
      );
      return Number(rows[0]?.['seq']);
    });
    return result.accepted ? { accepted: true, seq: result.value } : { accepted: false, highest: result.highestFence };
  }

  /** Every accepted write, in commit order. */
  async rows(): Promise<RegisterRow[]> {
    const { rows } = await this.pool.query(`SELECT seq, key, fence, mode, writer, lease, op FROM ${this.#schema}.log ORDER BY seq`);
    return rows.map((r) => ({
      seq: Number(r['seq']), key: String(r['key']), fence: Number(r['fence']), mode: r['mode'] as Mode,
      writer: String(r['writer']), lease: String(r['lease']), op: String(r['op']),
    }));
  }

  async values(): Promise<RegisterValue[]> {
    const { rows } = await this.pool.query(`SELECT key, fence, op, writes FROM ${this.#schema}.value ORDER BY key`);
    return rows.map((r) => ({ key: String(r['key']), fence: Number(r['fence']), op: String(r['op']), writes: Number(r['writes']) }));
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.#schema} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}
