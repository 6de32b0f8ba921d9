/**
 * Keys name resources: 1 to 512 bytes of UTF-8, segments separated by `/`, no empty segment,
 * no control characters, in Unicode normalization form C. `apps/42/task` is below `apps/42` and
 * `apps`. Keys compare byte for byte, so two spellings of the same text (NFC `é`, NFD `e` + U+0301)
 * would be two keys that never conflict: a key not in NFC is refused (400 naming the field) rather
 * than silently normalized, so what a caller locks is exactly what every store and history shows.
 */
import { InvalidRequestError } from './errors.js';

export const MAX_KEY_BYTES = 512;
// C0 controls, DEL and C1 controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

// Printable ASCII: one byte per character, well-formed, in NFC, no controls.
const PRINTABLE_ASCII = /^[\u0020-\u007e]+$/;

/** Returns the reason a key is invalid, or `null` when it is valid. */
export function keyProblem(key: unknown): string | null {
  if (typeof key !== 'string') return `expected a string, got ${key === null ? 'null' : typeof key}`;
  // Most keys are printable ASCII: one test answers for bytes, controls, surrogates and NFC.
  if (key.length <= MAX_KEY_BYTES && PRINTABLE_ASCII.test(key)) {
    if (key.charCodeAt(0) === 47 || key.charCodeAt(key.length - 1) === 47 || key.includes('//')) return `empty segment in ${JSON.stringify(key)}`;
    return null;
  }
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes < 1 || bytes > MAX_KEY_BYTES) return `expected 1..${MAX_KEY_BYTES} bytes of UTF-8, got ${bytes}`;
  if (CONTROL.test(key)) return 'control characters are not allowed';
  if (key.startsWith('/') || key.endsWith('/') || key.includes('//')) return `empty segment in ${JSON.stringify(key)}`;
  if (key.isWellFormed !== undefined && !key.isWellFormed()) return 'not well-formed UTF-16 (lone surrogate)';
  if (key.normalize('NFC') !== key) return `not in Unicode normalization form C; send ${JSON.stringify(key.normalize('NFC'))} (key.normalize('NFC'))`;
  return null;
}

export function validateKey(key: unknown, field = 'key'): string {
  const problem = keyProblem(key);
  if (problem !== null) throw new InvalidRequestError(field, problem);
  return key as string;
}

/** The proper ancestors of a key, nearest last: `a/b/c` gives `['a', 'a/b']`. */
export function ancestorsOf(key: string): string[] {
  const out: string[] = [];
  let index = key.indexOf('/');
  while (index !== -1) {
    out.push(key.slice(0, index));
    index = key.indexOf('/', index + 1);
  }
  return out;
}

/** True when `a` is a proper ancestor of `b`. */
export function isAncestor(a: string, b: string): boolean {
  return b.length > a.length && b.startsWith(a) && b.charCodeAt(a.length) === 47; /* '/' */
}

/** True when the keys are equal or one is an ancestor of the other. */
export function keysOverlap(a: string, b: string): boolean {
  return a === b || isAncestor(a, b) || isAncestor(b, a);
}
