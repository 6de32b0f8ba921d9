/** The shape of a CLI command and the exit codes every command shares (sysexits). */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT = Object.freeze({
  ok: 0,
  /** The lease was lost while the command ran. */
  lost: 70,
  /** Bad flags, bad durations, bad arguments. */
  usage: 64,
  /** The store or server could not be reached. */
  unavailable: 69,
  /** The lock is busy (or the wait timed out). */
  busy: 75,
  /** Any other failure. */
  failure: 1,
});

export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export interface CliCommand {
  name: string;
  /** One line for `holdfast --help`. */
  summary: string;
  /** The usage block with flags and examples for `holdfast NAME --help`. */
  usage: string;
  run(argv: string[], io: CliIO): Promise<number>;
}

/** A usage error: printed as one line followed by the command's usage, exit 64. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** `util.parseArgs` in strict mode, with its errors turned into `UsageError`s. */
export function parseFlags<T extends Options>(argv: string[], options: T): ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split('\n')[0]! : String(error));
  }
}
