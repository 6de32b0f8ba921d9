// Writes a generated module, or with `--check` on the command line exits 1 when it is out of
// date (the embed-* scripts share it).
import { readFileSync, writeFileSync } from 'node:fs';

export function writeOrCheck(target, text, command) {
  let current = null;
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    current = null;
  }
  if (process.argv.includes('--check')) {
    if (current !== text) {
      console.error(`${target} is out of date: run ${command}`);
      process.exit(1);
    }
  } else if (current !== text) {
    writeFileSync(target, text);
  }
}
