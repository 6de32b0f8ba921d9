/**
 * The conformance suite's Redis recipe: every test gets a random namespace (`?prefix=`) on the
 * Redis the matrix names (the shared one by default), and its keys are deleted afterwards with
 * SCAN + UNLINK of that namespace only (never FLUSHDB: others use the server).
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@redis/client';

export interface RedisNamespace {
  /** The store URL with `?prefix=` of the test's namespace. */
  url: string;
  drop(): Promise<void>;
}

export function redisNamespace(url: string): RedisNamespace {
  const prefix = `conf-${randomBytes(6).toString('hex')}`;
  const parsed = new URL(url);
  parsed.searchParams.set('prefix', prefix);
  return {
    url: parsed.toString(),
    async drop() {
      parsed.search = '';
      const client = createClient({ url: parsed.toString() });
      client.on('error', () => {});
      await client.connect();
      try {
        let cursor = '0';
        do {
          const [next, keys] = (await client.sendCommand(['SCAN', cursor, 'MATCH', `hf:{${prefix}}:*`, 'COUNT', '1000'])) as [string, string[]];
          cursor = next;
          if (keys.length > 0) await client.sendCommand(['UNLINK', ...keys]);
        } while (cursor !== '0');
      } finally {
        await client.close();
      }
    },
  };
}
