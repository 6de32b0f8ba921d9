#!/usr/bin/env node
// Bytes of WAL the Postgres store writes per acquire + release pair: `pg_current_wal_lsn()` read
// before and after N sequential pairs on one key, through `openLocks`, on a fresh schema (dropped
// afterwards). Nothing else should write to the cluster meanwhile (the LSN is cluster-wide).
//   node bench/pgbench/wal-per-pair.mjs [N, default 2000] [DIST, default ./dist]
// DIST lets two builds be compared (e.g. a `git worktree` of an older commit, built).
// HOLDFAST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test). Needs `npm run build`.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

const n = Number(process.argv[2] ?? 2000);
const dist = resolve(process.argv[3] ?? new URL('../../dist', import.meta.url).pathname);
const url = process.env.HOLDFAST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const { openLocks } = await import(pathToFileURL(`${dist}/src/index.js`).href);
const schema = `hf_wal_${process.pid}`;
const admin = new pg.Client({ connectionString: url });
await admin.connect();
const locks = await openLocks(`${url}${url.includes('?') ? '&' : '?'}schema=${schema}`, { owner: 'wal' });
try {
  const pair = async () => (await locks.acquire('k', { ttlMs: 30_000 })).release();
  for (let i = 0; i < 200; i++) await pair(); // warm-up: plans, pages
  const lsn = async () => (await admin.query('SELECT pg_current_wal_lsn() AS l')).rows[0].l;
  const before = await lsn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await pair();
  const seconds = (performance.now() - t0) / 1000;
  const bytes = Number((await admin.query('SELECT pg_wal_lsn_diff($1, $2) AS d', [await lsn(), before])).rows[0].d);
  console.log(`${dist}: ${(bytes / n).toFixed(0)} bytes of WAL per pair over ${n} pairs (${(n / seconds).toFixed(0)} pairs/s)`);
} finally {
  await locks.close();
  await admin.query(`DROP SCHEMA ${pg.escapeIdentifier(schema)} CASCADE`);
  await admin.end();
}
