#!/usr/bin/env node
// Compiles the Redis store's library of functions (src/stores/redis/library/*.lua, joined in name
// order into one library) into the committed module src/stores/redis/library.generated.ts, so the
// built package needs no Lua file at run time. Run it after editing the library (`npm run embed-lua`); `--check` exits 1 when the
// module is out of date (test/stores/redis/library.test.ts runs it).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeOrCheck } from './generated-file.mjs';

const root = new URL('..', import.meta.url).pathname;
const source = join(root, 'src', 'stores', 'redis', 'library');
const target = join(root, 'src', 'stores', 'redis', 'library.generated.ts');

export function render() {
  const parts = readdirSync(source).filter((f) => /^\d{2}_[a-z]+\.lua$/.test(f)).sort();
  if (parts.length === 0 || !parts[0].startsWith('01_')) throw new Error(`${source}: expected 01_*.lua and the parts after it`);
  const lua = parts.map((f) => readFileSync(join(source, f), 'utf8').replace(/\r\n/g, '\n')).join('\n');
  const version = createHash('sha256').update(lua).digest('hex').slice(0, 10);
  return `// GENERATED FILE, do not edit: \`node scripts/embed-lua.mjs\` writes it from
// src/stores/redis/library/*.lua (edit those, then run the script).

/** The first 10 hex digits of the SHA-256 of the library: its functions are named \`hf<version>_<op>\`. */
export const LIBRARY_VERSION = ${JSON.stringify(version)};

/** The library's code, for \`FUNCTION LOAD\`. */
export const LIBRARY_CODE: string = ${JSON.stringify(lua.replaceAll('@V@', version))};
`;
}

writeOrCheck(target, render(), 'node scripts/embed-lua.mjs');
