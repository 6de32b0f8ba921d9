#!/usr/bin/env node
// Compiles the SQL stores' migrations (src/stores/{postgres,mysql}/migrations/NNN_name.sql) into
// the committed modules src/stores/<store>/migrations.generated.ts, so the built package needs no
// SQL files at run time. A migration too long for one file is a folder NNN_name/ of parts
// (*.sql), joined in name order exactly as they are: the migration, and its checksum, are those of
// the joined text. Run it after editing a migration (`npm run embed-sql`); `--check` exits 1 when
// the module is out of date (a test runs it).
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeOrCheck } from './generated-file.mjs';

const root = new URL('..', import.meta.url).pathname;
const STORES = ['postgres', 'mysql'];
const NAME = /^(\d{3})_([a-z0-9_]+)(\.sql)?$/;

/** The text of a migration: its file, or its folder's parts joined in name order. */
function sqlOf(path) {
  const text = statSync(path).isDirectory()
    ? readdirSync(path).filter((f) => f.endsWith('.sql')).sort().map((f) => readFileSync(join(path, f), 'utf8')).join('')
    : readFileSync(path, 'utf8');
  return text.replace(/\r\n/g, '\n');
}

export function render(store = 'postgres') {
  const dir = join(root, 'src', 'stores', store, 'migrations');
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql') || statSync(join(dir, f)).isDirectory()).sort();
  const migrations = files.map((file, index) => {
    const match = NAME.exec(file);
    if (!match) throw new Error(`${file}: expected a name like 001_baseline.sql (or a folder 001_baseline of parts)`);
    const version = Number(match[1]);
    if (version !== index + 1) throw new Error(`${file}: expected version ${index + 1} (no gaps, no duplicates)`);
    const sql = sqlOf(join(dir, file));
    const checksum = createHash('sha256').update(sql).digest('hex').slice(0, 16);
    return { version, name: match[2], checksum, sql };
  });
  const entries = migrations
    .map((m) => `  {\n    version: ${m.version},\n    name: ${JSON.stringify(m.name)},\n    checksum: ${JSON.stringify(m.checksum)},\n    sql: ${JSON.stringify(m.sql)},\n  },\n`)
    .join('');
  return `// GENERATED FILE, do not edit: \`node scripts/embed-sql.mjs\` writes it from
// src/stores/${store}/migrations/*.sql (edit those, then run the script).

export interface Migration {
  /** The NNN of the file name: applied in this order, recorded in the schema's \`migrations\` table. */
  version: number;
  name: string;
  /** The first 16 hex digits of the SHA-256 of \`sql\`. */
  checksum: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
${entries}]);
`;
}

for (const store of STORES) {
  const target = join(root, 'src', 'stores', store, 'migrations.generated.ts');
  writeOrCheck(target, render(store), 'node scripts/embed-sql.mjs');
}
