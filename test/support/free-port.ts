/**
 * A free TCP port on 127.0.0.1 for a server a test starts (a PostgreSQL, PgBouncer, MariaDB,
 * Redis or etcd of its own, a holdfast server). The OS gives a port nobody listens on; between
 * that and the server binding it, another test file (they run in parallel) could be handed the
 * same port by its own probe, and one of the two servers then fails to start or, worse, a client
 * reaches the wrong one. So each port handed out is claimed in a directory all test processes
 * share (`<tmpdir>/holdfast-test-ports/<port>`, created exclusively) and not handed out again for
 * ten minutes.
 */
import { mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLAIMS = join(tmpdir(), 'holdfast-test-ports');
const CLAIM_MS = 10 * 60_000;

async function probe(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || address === null) throw new Error('no free port');
  return address.port;
}

/** True when this process now holds the claim on `port`. */
function claim(port: number): boolean {
  const file = join(CLAIMS, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    try {
      if (Date.now() - statSync(file).mtimeMs < CLAIM_MS) return false;
      const now = new Date();
      utimesSync(file, now, now); // a stale claim (an earlier run): taken over
      return true;
    } catch {
      return false;
    }
  }
}

export async function freePort(): Promise<number> {
  mkdirSync(CLAIMS, { recursive: true, mode: 0o777 });
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probe();
    if (claim(port)) return port;
  }
  throw new Error(`no free port: 100 free ports in a row were claimed in ${CLAIMS} in the last ten minutes`);
}
