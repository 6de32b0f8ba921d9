/**
 * Shell-friendly lock commands (vRO style: lock in one step, unlock in another):
 * `acquire` prints the lease, `renew` / `release` take its id, `release-owner` and
 * `force-release` clean up.
 */
import { EXIT, UsageError, parseFlags, type CliCommand, type CliIO } from '../command.js';
import { CONNECTION_FLAGS, CONNECTION_USAGE, defaultOwner, withLocks } from '../connect.js';
import { LOCK_FLAGS, LOCK_USAGE, duration, lockOptionsOf, resourcesOf } from '../flags.js';

const print = (io: CliIO, json: boolean, value: unknown, text: string): void => {
  io.stdout.write(json ? `${JSON.stringify(value)}\n` : `${text}\n`);
};

export const acquireCommand: CliCommand = {
  name: 'acquire',
  summary: 'acquire a lock and print the lease (id and fence) for a later release',
  usage: `Usage: holdfast acquire KEY [KEY...] --owner O [flags] [--json]

Prints "LEASE_ID FENCE" (or the lease as JSON). The lease is not renewed by this command: renew
it with \`holdfast renew\` before its TTL runs out, release it with \`holdfast release\`.
Busy: prints the holder and exits 75.

${LOCK_USAGE}
  --request-id ID     idempotent retries: the same owner and id get the same lease
  --json              print the lease as JSON
${CONNECTION_USAGE}

Examples:
  lease=$(holdfast acquire lb/SITEB-CLS-CLOUD-01 --owner inventory --ttl 10m --wait 30m | cut -d' ' -f1)
  holdfast acquire configdocs/update --owner api-1 --json`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...LOCK_FLAGS, ...CONNECTION_FLAGS, json: { type: 'boolean' }, 'request-id': { type: 'string' } });
    const resources = resourcesOf(positionals, values);
    const options = { ...lockOptionsOf(values, defaultOwner), requestId: values['request-id'] };
    return withLocks(values, io, async (locks) => {
      const { lease } = await locks.grant(resources, options);
      const json = { ...lease, acquiredAt: new Date(lease.acquiredAt).toISOString(), expiresAt: new Date(lease.expiresAt).toISOString() };
      print(io, values.json === true, json, `${lease.id} ${lease.fence}`);
      return EXIT.ok;
    });
  },
};

function leaseIdOf(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError('expected exactly one LEASE_ID');
  return positionals[0]!;
}

export const renewCommand: CliCommand = {
  name: 'renew',
  summary: 'extend a lease by its id',
  usage: `Usage: holdfast renew LEASE_ID [--ttl DURATION] [--json]

Extends the lease from now (by --ttl, default its current TTL). Exits 1 with LEASE_LOST if it
has expired or was released, NOT_FOUND if unknown.
${CONNECTION_USAGE}

Example:
  holdfast renew "$lease" --ttl 10m`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, ttl: { type: 'string' }, json: { type: 'boolean' } });
    const id = leaseIdOf(positionals);
    const ttlMs = duration(values.ttl, 'ttl');
    return withLocks(values, io, async (locks) => {
      const lease = await locks.renew(id, ttlMs === undefined ? {} : { ttlMs });
      const expiresAt = new Date(lease.expiresAt).toISOString();
      print(io, values.json === true, { ...lease, acquiredAt: new Date(lease.acquiredAt).toISOString(), expiresAt }, `renewed until ${expiresAt}`);
      return EXIT.ok;
    });
  },
};

export const releaseCommand: CliCommand = {
  name: 'release',
  summary: 'release a lease by its id',
  usage: `Usage: holdfast release LEASE_ID

Prints "released" (exit 0), or "not held" (exit 1) when the lease had already ended.
${CONNECTION_USAGE}

Example:
  holdfast release "$lease"`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS });
    const id = leaseIdOf(positionals);
    return withLocks(values, io, async (locks) => {
      const released = await locks.release(id);
      io.stdout.write(released ? 'released\n' : 'not held\n');
      return released ? EXIT.ok : EXIT.failure;
    });
  },
};

export const releaseOwnerCommand: CliCommand = {
  name: 'release-owner',
  summary: 'release every lease of an owner (after a crashed task)',
  usage: `Usage: holdfast release-owner OWNER [--key KEY]

Ends every lease of OWNER, or only its lease on KEY (vRO's unlock(id, owner)). Prints the count.
${CONNECTION_USAGE}

Examples:
  holdfast release-owner task-17
  holdfast release-owner inventory --key lb/SITEB-CLS-CLOUD-01`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, key: { type: 'string' } });
    if (positionals.length !== 1) throw new UsageError('expected exactly one OWNER');
    return withLocks(values, io, async (locks) => {
      const count = await locks.releaseOwner(positionals[0]!, values.key === undefined ? {} : { key: values.key });
      io.stdout.write(`released ${count}\n`);
      return EXIT.ok;
    });
  },
};

export const forceReleaseCommand: CliCommand = {
  name: 'force-release',
  summary: 'admin: end every lease on a key',
  usage: `Usage: holdfast force-release KEY

Ends every lease on KEY (recorded in history with who did it). Prints the count.
${CONNECTION_USAGE}

Example:
  holdfast force-release apps/42/task`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS });
    if (positionals.length !== 1) throw new UsageError('expected exactly one KEY');
    return withLocks(values, io, async (locks) => {
      io.stdout.write(`released ${await locks.forceRelease(positionals[0]!)}\n`);
      return EXIT.ok;
    });
  },
};
