#!/usr/bin/env node
/**
 * The `holdfast` command. Each command is a module of `commands/` exporting a `CliCommand`; this
 * file only dispatches, prints usage, and turns usage errors into one line plus the usage on
 * stderr with exit 64. To add a command, add its module to `commands/index.ts` (or below).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EXIT, UsageError, type CliCommand, type CliIO } from './command.js';
import { LOCK_COMMANDS } from './commands/index.js';
import { serveCommand } from './commands/serve.js';

export const COMMANDS: readonly CliCommand[] = [serveCommand, ...LOCK_COMMANDS];

export function usage(commands: readonly CliCommand[] = COMMANDS): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: holdfast COMMAND [flags]

Locks and leases with fencing tokens, fair queues and push hand-off.

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run \`holdfast COMMAND --help\` for a command's flags.
`;
}

const wantsHelp = (argv: readonly string[]): boolean => argv.includes('--help') || argv.includes('-h');

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIO, commands: readonly CliCommand[] = COMMANDS): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(usage(commands));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`holdfast: unknown command ${JSON.stringify(name)}\n\n${usage(commands)}`);
    return EXIT.usage;
  }
  // `--help` before a `--` belongs to holdfast; after it, to the command that `run` starts.
  const dashDash = rest.indexOf('--');
  if (wantsHelp(dashDash === -1 ? rest : rest.slice(0, dashDash))) {
    io.stdout.write(`${command.usage}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`holdfast ${command.name}: ${error.message}\n\n${command.usage}\n`);
      return EXIT.usage;
    }
    io.stderr.write(`holdfast ${command.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failure;
  }
}

function isEntryPoint(): boolean {
  if (process.argv[1] === undefined) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const io: CliIO = { stdout: process.stdout, stderr: process.stderr, env: process.env };
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`holdfast: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = EXIT.failure;
    },
  );
}
