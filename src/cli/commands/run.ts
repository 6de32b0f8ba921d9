/**
 * `holdfast run KEY... -- command`: holds the lock while the command runs. The lease renews
 * itself; if it is lost anyway, the command gets SIGTERM before the store expires the lease, then
 * SIGKILL after `--kill-after`, and `run` exits 70. Busy (or wait timed out): prints who holds the
 * key until when and exits 75. Otherwise exits with the command's code.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { EXIT, UsageError, parseFlags, type CliCommand } from '../command.js';
import { CONNECTION_FLAGS, CONNECTION_USAGE, connect, defaultOwner } from '../connect.js';
import { LOCK_FLAGS, LOCK_USAGE, duration, exitFor, lockOptionsOf, resourcesOf } from '../flags.js';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

export const runCommand: CliCommand = {
  name: 'run',
  summary: 'run a command while holding a lock (renewed, released when it exits)',
  usage: `Usage: holdfast run KEY [KEY...] [flags] -- COMMAND [ARGS...]

Acquires the keys, runs COMMAND with HOLDFAST_LEASE_ID, HOLDFAST_FENCE and HOLDFAST_KEYS
(one key per line) in its environment, renews the lease while it runs, forwards SIGINT/SIGTERM,
releases when it exits and exits with its code. Busy: prints the holder, exits 75. Lease lost:
SIGTERM to the command, SIGKILL after --kill-after, exit 70.

${LOCK_USAGE}
  --kill-after D      after SIGTERM on a lost lease, SIGKILL this much later (default 5s)
${CONNECTION_USAGE}

Examples:
  holdfast run lb/SITEB-CLS-CLOUD-01 --wait 30m -- ./update-lb.sh
  holdfast run backups/db --ttl 2m --message "nightly backup" -- pg_dump -f db.sql
  holdfast run pools/P --shared --limit 3 -- ./worker`,

  async run(argv, io) {
    const dash = argv.indexOf('--');
    if (dash === -1) throw new UsageError('missing `--` before the command to run');
    const command = argv.slice(dash + 1);
    if (command.length === 0) throw new UsageError('missing the command after `--`');
    const { values, positionals } = parseFlags(argv.slice(0, dash), { ...LOCK_FLAGS, ...CONNECTION_FLAGS, 'kill-after': { type: 'string' } });
    const resources = resourcesOf(positionals, values);
    const killAfterMs = duration(values['kill-after'], 'kill-after') ?? 5000;
    const options = lockOptionsOf(values, defaultOwner);

    const locks = await connect(values, io);
    try {
      let lease;
      try {
        lease = await locks.acquire(resources, options);
      } catch (error) {
        const { code, message } = exitFor(error);
        io.stderr.write(`holdfast: ${message}\n`);
        return code;
      }
      let lost: string | null = null;
      const child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        env: {
          ...io.env,
          HOLDFAST_LEASE_ID: lease.id,
          HOLDFAST_FENCE: String(lease.fence),
          HOLDFAST_KEYS: lease.keys.join('\n'),
        },
      });
      const forward = (signal: NodeJS.Signals): void => {
        child.kill(signal);
      };
      for (const signal of FORWARDED) process.on(signal, forward);
      let killTimer: NodeJS.Timeout | undefined;
      lease.on('lost', (error) => {
        lost = error.message;
        io.stderr.write(`holdfast: lost the lock on ${lease.keys.join(', ')}: ${error.message}; stopping the command\n`);
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      });
      const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        child.once('error', (error) => resolve({ code: null, signal: null, error }));
        child.once('exit', (code, signal) => resolve({ code, signal }));
      });
      for (const signal of FORWARDED) process.off(signal, forward);
      if (killTimer) clearTimeout(killTimer);
      try {
        await lease.release();
      } catch (error) {
        io.stderr.write(`holdfast: could not release the lease (it expires by itself): ${exitFor(error).message}\n`);
      }
      if (exit.error) {
        io.stderr.write(`holdfast: could not start ${JSON.stringify(command[0])}: ${exit.error.message}\n`);
        return 127;
      }
      if (lost !== null) return EXIT.lost;
      if (exit.code !== null) return exit.code;
      return 128 + (exit.signal ? constants.signals[exit.signal] : 0);
    } finally {
      await locks.close();
    }
  },
};
