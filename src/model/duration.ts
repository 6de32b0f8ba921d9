import { InvalidRequestError } from './errors.js';

/** A duration: milliseconds as a number, or a string like `500ms`, `30s`, `5m`, `2h`, `1d`. */
export type Duration = number | string;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

/** Parses a duration into whole milliseconds; throws `INVALID_REQUEST` naming `field`. */
export function parseDuration(value: unknown, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new InvalidRequestError(field, `expected a non-negative number of milliseconds, got ${String(value)}`);
    }
    return Math.round(value);
  }
  if (typeof value === 'string') {
    const match = PATTERN.exec(value);
    if (match) {
      const unit = (match[2] ?? 'ms') as keyof typeof UNIT_MS;
      return Math.round(Number(match[1]) * UNIT_MS[unit]);
    }
    throw new InvalidRequestError(field, `expected a duration like 500ms, 30s, 5m or 2h, got ${JSON.stringify(value)}`);
  }
  throw new InvalidRequestError(field, `expected a duration (milliseconds or a string like 30s), got ${typeName(value)}`);
}

/** Parses a duration and checks it lies in `min..max` (inclusive). */
export function parseDurationIn(value: unknown, field: string, min: number, max: number): number {
  const ms = parseDuration(value, field);
  if (ms < min || ms > max) {
    throw new InvalidRequestError(field, `expected ${min}..${max} ms, got ${ms}`);
  }
  return ms;
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`.slice(0, 80);
}
