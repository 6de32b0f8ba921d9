/**
 * Opens a `Locks` object from the CLI's connection flags: `--server URL` (or `HOLDFAST_SERVER`,
 * token from `HOLDFAST_TOKEN`) talks to a holdfast server; `--store URL` (or `HOLDFAST_STORE`)
 * talks to a store directly. Default: the server if `HOLDFAST_SERVER` is set, else
 * `sqlite:./holdfast.db`, the file `holdfast serve` uses by default.
 */
import { hostname, userInfo } from 'node:os';
import { openLocks } from '../engine/open.js';
import type { Locks } from '../engine/locks.js';
import type { LocksOptions } from '../engine/options.js';
import type { CliIO, Options } from './command.js';
import { exitFor } from './flags.js';

export const CONNECTION_FLAGS = {
  server: { type: 'string' },
  store: { type: 'string' },
  token: { type: 'string' },
} as const satisfies Options;

export const CONNECTION_USAGE = `Connection:
  --server URL    a holdfast server (env HOLDFAST_SERVER; token from HOLDFAST_TOKEN or --token)
  --store URL     a store, directly (env HOLDFAST_STORE; default sqlite:./holdfast.db)`;

export interface ConnectionFlags {
  server?: string | undefined;
  store?: string | undefined;
  token?: string | undefined;
}

export function defaultOwner(): string {
  let user = 'user';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): keep the generic name.
  }
  return `${user}@${hostname()}:${process.pid}`;
}

export function targetOf(flags: ConnectionFlags, io: CliIO): string {
  // Empty environment variables count as unset.
  return flags.server ?? flags.store ?? (io.env['HOLDFAST_SERVER'] || io.env['HOLDFAST_STORE'] || 'sqlite:./holdfast.db');
}

export async function connect(flags: ConnectionFlags, io: CliIO, options: LocksOptions = {}): Promise<Locks> {
  const url = targetOf(flags, io);
  const token = flags.token ?? (io.env['HOLDFAST_TOKEN'] || undefined);
  const storeOptions = /^https?:/i.test(url) && token ? { ...options.storeOptions, token } : options.storeOptions;
  return openLocks(url, { actor: defaultOwner(), ...options, ...(storeOptions ? { storeOptions } : {}) });
}

/**
 * Runs `fn` with a `Locks` object that renews nothing, closes it afterwards, and turns a library
 * error into its one-line message and exit code.
 */
export async function withLocks(flags: ConnectionFlags, io: CliIO, fn: (locks: Locks) => Promise<number>): Promise<number> {
  const locks = await connect(flags, io, { autoRenew: false });
  try {
    return await fn(locks);
  } catch (error) {
    const { code, message } = exitFor(error);
    io.stderr.write(`holdfast: ${message}\n`);
    return code;
  } finally {
    await locks.close();
  }
}
