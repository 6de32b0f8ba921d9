/** Checks of option values that name the field and the reason (stores' and servers' options). */
import { typeName } from './duration.js';
import { InvalidRequestError } from './errors.js';

export function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(field, `expected an integer ${min}..${max}, got ${typeName(value)}`);
  }
  return value;
}

export function booleanOption(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new InvalidRequestError(field, `expected true or false, got ${typeName(value)}`);
  return value;
}
