/**
 * Seed 002, Airship Shipyard's `api_lock`, with holdfast.
 *
 * Shipyard runs several instances of its API. Handlers that update the configuration documents
 * are wrapped in `@api_lock(ApiLockType.CONFIGDOCS_UPDATE)`: while one instance runs such a
 * handler, the others answer 409 "Blocked by another process ... Lock expires in not more than N
 * seconds", and a failed release is logged, never fails the request. With holdfast:
 *   1. Instance A (Fastify, `fastifyLock`) and instance B (Express, `expressLock`) share a store and
 *      lock the route on `configdocs/update`.
 *   2. While A's handler runs, B (and A itself) answer 409 with Shipyard's sentence, the holder in
 *      the SPEC error body, and `Retry-After`.
 *   3. The lock is released just before A's answer leaves, so B's next request succeeds at once.
 *   4. The store goes down while instance C's handler runs: the release fails, C still answers
 *      200, the failure is logged, and the lease ends by its TTL: B is blocked "not more than N
 *      seconds", then succeeds.
 *
 * Run: `node dist/examples/shipyard-api-lock.js [STORE_URL]` (default `HOLDFAST_STORE` or `memory:`).
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
// In your own code: `from 'holdfast'`.
import { expressLock, fastifyLock, openLocks, openStore, StoreUnavailableError, type Locks, type LockStore } from '../src/index.js';
import { runAsScript } from './_support.js';

export interface ShipyardOptions {
  /** Store URL: `memory:`, `sqlite:/path/file.db`, `postgres://...` */
  store: string;
  log?: (line: string) => void;
}

export interface Answer {
  status: number;
  retryAfter: string | null;
  body: { error?: { code: string; message: string; holders?: { owner: string; key: string }[] } } & Record<string, unknown>;
}

export interface ShipyardResult {
  key: string;
  /** B's answer while A's handler held the lock. */
  blockedOnB: Answer;
  /** A's own second request meanwhile. */
  blockedOnA: Answer;
  /** A's first request, once its handler finished. */
  first: Answer;
  /** B's request right after A's answer. */
  afterA: Answer;
  /** C's request during the store outage: its release failed. */
  duringOutage: Answer;
  /** What C logged about the failed release. */
  releaseErrors: string[];
  /** B's request right after the outage: the unreleased lease still holds the key. */
  afterOutage: Answer;
  /** B's request once the unreleased lease's TTL ran out. */
  afterExpiry: Answer;
  /** TTL of C's lease, in ms. */
  outageTtlMs: number;
}

/** A store whose `release` fails while `down` is set, as if the database were unreachable. */
function flaky(store: LockStore): { store: LockStore; setDown(down: boolean): void } {
  let down = false;
  const proxy = new Proxy(store, {
    get(target, name) {
      if (name === 'release' && down) return async () => Promise.reject(new StoreUnavailableError('connection refused'));
      const value: unknown = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: proxy, setDown: (value) => (down = value) };
}

async function listenFastify(app: FastifyInstance): Promise<string> {
  return app.listen({ host: '127.0.0.1', port: 0 });
}

async function listenExpress(app: express.Express): Promise<{ url: string; server: Server }> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }));
  });
}

async function post(base: string, path: string, body: unknown): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Answer['body'] };
}

export async function main(options: ShipyardOptions): Promise<ShipyardResult> {
  const log = options.log ?? (() => {});
  const key = `shipyard-${randomBytes(3).toString('hex')}/configdocs/update`;
  const lock = { key: () => key, name: 'configdocs/update', ttlMs: 60_000, metadata: { message: 'Shipyard is updating the configuration documents' } };

  // Each instance has its own Locks object; with `memory:` they share one in-process store.
  const shared = options.store.startsWith('memory:') ? await openStore(options.store) : null;
  const open = (owner: string, wrap?: (store: LockStore) => LockStore): Promise<Locks> =>
    shared ? openLocks(wrap ? wrap(shared) : shared, { owner }) : wrap ? openStore(options.store).then((s) => openLocks(wrap(s), { owner })) : openLocks(options.store, { owner });
  const locksA = await open('shipyard-a');
  const locksB = await open('shipyard-b');
  const outage = { setDown: (_down: boolean): void => {} };
  const locksC = await open('shipyard-c', (store) => {
    const f = flaky(store);
    outage.setDown = f.setDown;
    return f.store;
  });

  // Instance A: Fastify. Its handler waits for `finishA`, as a long update would.
  let finishA: () => void = () => {};
  const updateA = new Promise<void>((resolve) => (finishA = resolve));
  let enteredA: () => void = () => {};
  const inHandlerA = new Promise<void>((resolve) => (enteredA = resolve));
  const appA = Fastify();
  const routeLockA = fastifyLock({ locks: locksA, ...lock, owner: (request) => `shipyard-a:${String(request.headers['x-user'] ?? 'anonymous')}` });
  appA.post('/api/v1.0/configdocs/:collection', { ...routeLockA.hooks }, async (request) => {
    enteredA();
    await updateA;
    return { collection: (request.params as { collection: string }).collection, fence: routeLockA.leaseOf(request)?.fence };
  });

  // Instance B: Express.
  const appB = express();
  appB.use(express.json());
  appB.post('/api/v1.0/configdocs/:collection', expressLock({ locks: locksB, ...lock, owner: 'shipyard-b' }), (req, res) => {
    res.status(201).json({ collection: req.params['collection'], fence: (res.locals['lease'] as { fence: number }).fence });
  });

  // Instance C: Fastify over a store that goes down while its handler runs.
  const releaseErrors: string[] = [];
  const appC = Fastify();
  const outageTtlMs = 1000;
  const routeLockC = fastifyLock({
    locks: locksC, ...lock, ttlMs: outageTtlMs, owner: 'shipyard-c',
    onReleaseError: (error) => releaseErrors.push(error instanceof Error ? error.message : String(error)),
  });
  appC.post('/api/v1.0/configdocs/:collection', { ...routeLockC.hooks }, async () => {
    outage.setDown(true);
    return { updated: true };
  });

  const [a, { url: b, server: serverB }, c] = await Promise.all([listenFastify(appA), listenExpress(appB), listenFastify(appC)]);
  try {
    log(`instances: A (Fastify) ${a}, B (Express) ${b}, C (Fastify) ${c}; lock ${key}`);
    const first = post(a, '/api/v1.0/configdocs/site-design', { documents: [] });
    await inHandlerA;
    const blockedOnB = await post(b, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`B while A updates: ${blockedOnB.status} Retry-After ${blockedOnB.retryAfter}: ${blockedOnB.body.error?.message}`);
    const blockedOnA = await post(a, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`A again while A updates: ${blockedOnA.status}`);
    finishA();
    const firstDone = await first;
    log(`A's update: ${firstDone.status}`);
    const afterA = await post(b, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`B right after A's answer: ${afterA.status}`);

    const duringOutage = await post(c, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`C during a store outage: ${duringOutage.status}; release failed: ${releaseErrors.join('; ')}`);
    outage.setDown(false);
    const afterOutage = await post(b, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`B after the outage: ${afterOutage.status}: ${afterOutage.body.error?.message}`);
    await new Promise((resolve) => setTimeout(resolve, outageTtlMs + 300));
    const afterExpiry = await post(b, '/api/v1.0/configdocs/site-design', { documents: [] });
    log(`B once the unreleased lease expired: ${afterExpiry.status}`);
    return { key, blockedOnB, blockedOnA, first: firstDone, afterA, duringOutage, releaseErrors, afterOutage, afterExpiry, outageTtlMs };
  } finally {
    finishA();
    serverB.closeAllConnections();
    await Promise.all([appA.close(), appC.close(), new Promise((resolve) => serverB.close(resolve))]);
    await Promise.all([locksA.close(), locksB.close(), locksC.close()]);
    await shared?.close();
  }
}

runAsScript(import.meta.url, main, (result) => ({ ...result, blockedOnB: { ...result.blockedOnB, body: result.blockedOnB.body.error?.code } }));
