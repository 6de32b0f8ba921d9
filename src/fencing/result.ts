/**
 * Fenced writes (Kleppmann, "How to do distributed locking"): the resource remembers the highest
 * fence it has accepted per name and refuses a write whose fence is older. A holder that paused
 * past its lease (a GC pause, a SIGSTOP) and wakes after another holder wrote is refused.
 * A fence equal to the highest seen is accepted: the same lease may write several times.
 */
import { InvalidRequestError } from '../model/errors.js';

export type FencedResult<T> =
  | { accepted: true; value: T; fence: number }
  /** Refused: `highestFence` is the newer fence the resource has already seen. */
  | { accepted: false; highestFence: number };

export interface FencedWriteOptions {
  /** The name of the guarded resource (a row, a file, a config document). */
  resource: string;
  /** The lease's fence (`lease.fence`, or `HOLDFAST_FENCE` in `holdfast run`). */
  fence: number;
  /**
   * The table that keeps the highest fence per resource.
   * @default 'holdfast_fences'
   */
  table?: string;
}

export const FENCING_DEFAULTS = Object.freeze({ table: 'holdfast_fences' });

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Validates the options shared by every fenced write; returns the table's name parts. */
export function checkFencedOptions(options: FencedWriteOptions): string[] {
  if (typeof options.resource !== 'string' || options.resource.length === 0 || options.resource.length > 512) {
    throw new InvalidRequestError('resource', 'expected a string of 1..512 characters');
  }
  if (!Number.isSafeInteger(options.fence) || options.fence < 1) {
    throw new InvalidRequestError('fence', `expected a positive integer, got ${String(options.fence)}`);
  }
  const table = options.table ?? FENCING_DEFAULTS.table;
  const parts = table.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new InvalidRequestError('table', `expected an identifier like holdfast_fences or schema.table, got ${JSON.stringify(table)}`);
  }
  return parts;
}
