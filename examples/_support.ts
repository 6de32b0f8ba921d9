/** What every seed example shares: a peer process on the same store, a timed transcript, running as a script. */
import { pathToFileURL } from 'node:url';
import { openLocks, type Locks } from '../src/index.js';

/** Opens another `Locks` on the same store, as another process would. */
export async function openPeer(url: string, first: Locks): Promise<Locks> {
  // `memory:` lives inside one process: a second Locks object shares the first one's store.
  return url.startsWith('memory:') ? openLocks(first.store) : openLocks(url);
}

/** A logger that prefixes each line with the seconds since the story began. */
export function transcript(log: ((line: string) => void) | undefined): (line: string) => void {
  const write = log ?? (() => {});
  const started = performance.now();
  return (line) => write(`[+${((performance.now() - started) / 1000).toFixed(3)}s] ${line}`);
}

/**
 * When the example is the script node runs (`node dist/examples/NAME.js [STORE_URL]`), runs its
 * story on the store from the argument, `HOLDFAST_STORE` or `memory:`, and prints the result.
 */
export function runAsScript<R>(
  moduleUrl: string,
  main: (options: { store: string; log: (line: string) => void }) => Promise<R>,
  summary: (result: R) => unknown = (result) => result,
): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  const store = process.argv[2] ?? process.env['HOLDFAST_STORE'] ?? 'memory:';
  main({ store, log: (line) => console.log(line) }).then(
    (result) => console.log(`result: ${JSON.stringify(summary(result))}`),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
