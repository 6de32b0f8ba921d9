/** Every lock command of the CLI, in the order `holdfast --help` lists them. */
import type { CliCommand } from '../command.js';
import { eventsCommand } from './events.js';
import { acquireCommand, forceReleaseCommand, releaseCommand, releaseOwnerCommand, renewCommand } from './lease.js';
import { historyCommand, lsCommand } from './ls.js';
import { runCommand } from './run.js';

export const LOCK_COMMANDS: readonly CliCommand[] = [
  runCommand, acquireCommand, renewCommand, releaseCommand, releaseOwnerCommand, forceReleaseCommand,
  lsCommand, historyCommand, eventsCommand,
];
