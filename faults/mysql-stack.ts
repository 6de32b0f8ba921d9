/**
 * The `mysql://` store under test (see stack.ts): a fresh database `hf_faults_<run>` on the URL's
 * server, or, with `restart-store`, on a private MariaDB server of the harness
 * (test/stores/mysql/server.ts) that the nemesis kills with SIGKILL and starts again.
 */
import mysql from 'mysql2/promise';
import { mariadbUnavailable, PrivateMariadb } from '../test/stores/mysql/server.js';
import type { Stack, StackOptions } from './stack.js';

async function admin(url: string, text: string, values: unknown[] = []): Promise<unknown> {
  const connection = await mysql.createConnection({ uri: url, connectTimeout: 10_000 });
  connection.on('error', () => {});
  try {
    const [rows] = await connection.query(text, values);
    return rows;
  } finally {
    await connection.end().catch(() => {});
  }
}

export async function mysqlStack(url: string, options: StackOptions): Promise<Stack> {
  let server: PrivateMariadb | null = null;
  let base = new URL(url.replace(/^mariadb:/i, 'mysql:'));
  if (options.restartable) {
    const why = mariadbUnavailable();
    if (why !== null) throw new Error(`restart-store on mysql needs a private MariaDB server: ${why}`);
    server = await PrivateMariadb.create();
    base = new URL(server.url);
  }
  const database = `hf_faults_${options.runId}`;
  await admin(base.toString(), `CREATE DATABASE \`${database}\``);
  const storeUrl = new URL(base);
  storeUrl.pathname = `/${database}`;
  return {
    kind: 'mysql',
    url: storeUrl.toString(),
    describe: server ? `mysql private MariaDB ${base.host} database ${database}` : `mysql ${base.host} database ${database}`,
    storeOptions: () => ({ poolSize: 3, historyLimit: 1_000_000_000 }),
    restart: server
      ? async () => {
          const started = performance.now();
          await server.kill9();
          await server.start();
          return `kill -9 mariadbd and start again: ${Math.round(performance.now() - started)} ms`;
        }
      : null,
    dropConnections: async () => {
      const rows = (await admin(base.toString(), 'SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()', [database])) as Array<{ ID: number }>;
      let killed = 0;
      for (const { ID } of rows) {
        await admin(base.toString(), 'KILL CONNECTION ?', [ID]).then(() => killed++, () => {});
      }
      return `killed ${killed} connections (all of database ${database})`;
    },
    close: async () => {
      if (server) await server.destroy();
      else await admin(base.toString(), `DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
    },
  };
}
