/** `holdfast ls` (held locks and waiters) and `holdfast history`. */
import { EXIT, UsageError, parseFlags, type CliCommand } from '../command.js';
import { CONNECTION_FLAGS, CONNECTION_USAGE, withLocks } from '../connect.js';
import { messageOf, span, table } from '../format.js';

export const lsCommand: CliCommand = {
  name: 'ls',
  summary: 'show held locks and queued waiters',
  usage: `Usage: holdfast ls [PREFIX] [--json]

Lists held locks (key, mode, owner, fence, expires in, message) and waiters (position, waiting
since) whose key starts with PREFIX.
${CONNECTION_USAGE}

Examples:
  holdfast ls
  holdfast ls apps/ --json`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, json: { type: 'boolean' } });
    if (positionals.length > 1) throw new UsageError('expected at most one PREFIX');
    return withLocks(values, io, async (locks) => {
      const { locks: held, waiters } = await locks.list({ prefix: positionals[0] ?? '' });
      if (values.json) {
        io.stdout.write(`${JSON.stringify({ locks: held, waiters })}\n`);
        return EXIT.ok;
      }
      const now = Date.now();
      if (held.length === 0 && waiters.length === 0) {
        io.stdout.write('no locks held, nobody waiting\n');
        return EXIT.ok;
      }
      if (held.length > 0) {
        io.stdout.write(
          table(
            ['KEY', 'MODE', 'OWNER', 'FENCE', 'EXPIRES IN', 'MESSAGE'],
            held.map((l) => [l.key, l.limit === null ? l.mode : `${l.mode}/${l.limit}`, l.owner, String(l.fence), span(Date.parse(l.expiresAt) - now), messageOf(l.metadata)]),
          ),
        );
      }
      if (waiters.length > 0) {
        if (held.length > 0) io.stdout.write('\n');
        io.stdout.write(
          table(
            ['WAITING FOR', 'MODE', 'OWNER', 'POSITION', 'WAITING SINCE', 'GIVES UP IN', 'MESSAGE'],
            waiters.map((w) => [w.key, w.mode, w.owner, String(w.position), w.since.slice(11, 19), span(Date.parse(w.waitUntil) - now), messageOf(w.metadata)]),
          ),
        );
      }
      return EXIT.ok;
    });
  },
};

export const historyCommand: CliCommand = {
  name: 'history',
  summary: 'show past lease events (acquired, released, expired, forced)',
  usage: `Usage: holdfast history [--key KEY] [--owner OWNER] [--limit N] [--json]

Newest first.
${CONNECTION_USAGE}

Example:
  holdfast history --key apps/42/task --limit 20`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { ...CONNECTION_FLAGS, key: { type: 'string' }, owner: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const limit = values.limit === undefined ? 50 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit: expected a positive integer, got ${JSON.stringify(values.limit)}`);
    return withLocks(values, io, async (locks) => {
      const events = await locks.history({ limit, ...(values.key ? { key: values.key } : {}), ...(values.owner ? { owner: values.owner } : {}) });
      if (values.json) {
        io.stdout.write(`${JSON.stringify({ events })}\n`);
      } else {
        io.stdout.write(
          table(
            ['AT', 'EVENT', 'KEYS', 'OWNER', 'FENCE', 'BY'],
            events.map((e) => [e.at, e.type, e.resources.map((r) => r.key).join(','), e.owner, String(e.fence), e.by ?? '']),
          ),
        );
      }
      return EXIT.ok;
    });
  },
};
