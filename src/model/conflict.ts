/**
 * The conflict rule of SPEC section 2: two locks conflict when their keys are equal or one is an
 * ancestor of the other, unless both are `shared` (and, on the same key, the limit is not exceeded;
 * limits are counted by the stores, which see every holder).
 */
import { keysOverlap } from './keys.js';
import type { Resource } from './types.js';

/** Conflict by mode and key alone (shared limits aside). */
export function resourcesConflict(a: Pick<Resource, 'key' | 'mode'>, b: Pick<Resource, 'key' | 'mode'>): boolean {
  if (!keysOverlap(a.key, b.key)) return false;
  return a.mode === 'exclusive' || b.mode === 'exclusive';
}

export function requestsConflict(a: readonly Resource[], b: readonly Resource[]): boolean {
  return a.some((x) => b.some((y) => resourcesConflict(x, y)));
}
