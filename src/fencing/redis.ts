/**
 * Fenced writes to Redis: one Lua script compares the fence kept beside the value and sets both
 * atomically, or refuses. Works with ioredis (`eval(script, numKeys, ...args)`).
 *
 * Script inputs: KEYS[1] the value's key, KEYS[2] its fence key; ARGV[1] the fence, ARGV[2] the value.
 * Output: {1, fence} when written, {0, highest} when refused.
 */
import { InvalidRequestError } from '../model/errors.js';
import type { FencedResult } from './result.js';

export interface RedisEvalLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

export const FENCED_SET_LUA = `
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
local fence = tonumber(ARGV[1])
if fence < highest then return {0, highest} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return {1, fence}
`;

export interface RedisFencedSetOptions {
  /** The key to write. */
  key: string;
  fence: number;
  value: string;
  /**
   * Where the highest fence is kept. Use a hash tag (`{key}`) on a cluster.
   * @default `${key}:fence`
   */
  fenceKey?: string;
}

export async function fencedSetRedis(redis: RedisEvalLike, options: RedisFencedSetOptions): Promise<FencedResult<string>> {
  if (typeof options.key !== 'string' || options.key.length === 0) throw new InvalidRequestError('key', 'expected a non-empty string');
  if (!Number.isSafeInteger(options.fence) || options.fence < 1) {
    throw new InvalidRequestError('fence', `expected a positive integer, got ${String(options.fence)}`);
  }
  if (typeof options.value !== 'string') throw new InvalidRequestError('value', 'expected a string');
  const fenceKey = options.fenceKey ?? `${options.key}:fence`;
  const reply = (await redis.eval(FENCED_SET_LUA, 2, options.key, fenceKey, options.fence, options.value)) as [number, number];
  return reply[0] === 1 ? { accepted: true, value: options.value, fence: options.fence } : { accepted: false, highestFence: Number(reply[1]) };
}
