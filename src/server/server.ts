/**
 * `buildServer(options)`: the HTTP API of SPEC section 5 on Fastify, over one store. Returns the
 * Fastify instance, not yet listening (tests use `inject`, or `listen` on an ephemeral port).
 *
 * Leases are handed out with `Locks.grant()`: lease records that nothing on the server renews or
 * releases. Clients renew and release them over HTTP, and closing the server leaves them held (a
 * restarted server, or another instance on the same store, serves them on). Closing the server
 * ends waits (their clients get 503), closes event streams, stops the sweeper and closes the
 * store if the server opened it.
 */
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Locks } from '../engine/locks.js';
import { WakeRouter } from '../engine/wakeups.js';
import { Heartbeats } from '../engine/heartbeats.js';
import { openStore } from '../engine/open.js';
import { NotFoundError, StoreUnavailableError } from '../model/errors.js';
import { unlimitListeners } from '../model/linked-abort.js';
import type { LockStore } from '../stores/store.js';
import { ANONYMOUS } from './auth.js';
import { ServerStore } from './server-store.js';
import { decorateRequests, markStart, RecentGrants, setPrincipal, type RouteSpec, type ServerContext } from './context.js';
import { errorHandler, schemaError, sendError } from './errors.js';
import { EventHub } from './events.js';
import { HistoryFollower } from './follower.js';
import { ParkedWaits } from './long-waits.js';
import { ServerMetrics } from './metrics.js';
import { TicketOwners } from './ownership.js';
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from './options.js';
import { redactUrl } from './present.js';
import { lazyRequestLog, QuietRequestLog, requestIds } from './request-log.js';
import { webGuard } from './web-guard.js';
import { leaseRoutes } from './routes/leases.js';
import { lockRoutes } from './routes/locks.js';
import { miscRoutes } from './routes/misc.js';
import { streamRoutes } from './routes/stream.js';
import { ticketRoutes } from './routes/tickets.js';

/** Path parameters hold keys (512 bytes, up to 3 characters each when URL-encoded) and owners. */
const MAX_PARAM_LENGTH = 4096;
const TCP_KEEPALIVE_MS = 15_000;

function fastifyFor(options: ResolvedServerOptions, onError: ReturnType<typeof errorHandler>): FastifyInstance {
  return Fastify({
    // Errors of the router (a bad percent-encoding, an overlong segment) answer like every other error.
    frameworkErrors: (error, request, reply) => void onError(error, request, reply),
    logger: {
      level: options.logLevel,
      ...(options.logStream ? { stream: options.logStream } : {}),
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: '[redacted]' },
      serializers: {
        req: (request: FastifyRequest) => ({ method: request.method, url: redactUrl(request.url), remoteAddress: request.ip }),
      },
    },
    genReqId: requestIds(),
    logController: new QuietRequestLog(),
    childLoggerFactory: lazyRequestLog,
    bodyLimit: options.bodyLimit,
    requestTimeout: options.requestTimeoutMs,
    // Node checks the header and request timeouts every connectionsCheckingInterval (30 s by
    // default), so a trickling client could stay twice requestTimeoutMs: check 4 times as often.
    http: { connectionsCheckingInterval: Math.max(250, Math.floor(options.requestTimeoutMs / 4)), headersTimeout: options.requestTimeoutMs },
    keepAliveTimeout: options.keepAliveTimeoutMs,
    // Waits are held open up to maxWaitMs: the socket may be silent that long.
    connectionTimeout: 0,
    forceCloseConnections: 'idle',
    return503OnClosing: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, ignoreTrailingSlash: false },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, allowUnionTypes: true } },
    schemaErrorFormatter: schemaError,
  });
}

/** Builds the server (not listening). The caller closes it with `app.close()`. */
export async function buildServer(options: ServerOptions = {}): Promise<FastifyInstance> {
  const resolved = resolveServerOptions(options);
  const store: LockStore = typeof resolved.store === 'string'
    ? new ServerStore(await openStore(resolved.store, resolved.storeOptions), { owned: true })
    : new ServerStore(resolved.store);
  let app: FastifyInstance;
  let locks: Locks;
  const onError = errorHandler(resolved.bodyLimit, () => metrics.storeError());
  try {
    locks = new Locks(store, { actor: 'holdfast-server', waiterTtlMs: resolved.waiterTtlMs, autoRenew: false });
    app = fastifyFor(resolved, onError);
  } catch (error) {
    await store.close();
    throw error;
  }
  const hub = new EventHub(resolved.eventBufferSize);
  const metrics = new ServerMetrics(store, () => hub.subscribers);
  // What other processes sharing the store did reaches this server through the history.
  const follower = store.info.kind === 'memory' ? null : new HistoryFollower({
    store, intervalMs: resolved.followIntervalMs, active: () => hub.followed(resolved.resumeWindowMs),
    publish: (change) => hub.publish(change),
    onPause: () => hub.markGap(),
    onError: (error) => {
      metrics.storeError();
      app.log.warn({ err: error }, 'reading the history for other processes\' changes failed');
    },
  });
  const unwatch = store.watch((change) => {
    metrics.observeChange(change);
    if (follower === null || follower.noteLocal(change)) hub.publish(change);
  });
  follower?.start();
  // The first follower's baseline is read at once, so what others do from then on is streamed.
  if (follower !== null) hub.onFirstSubscriber = () => void follower.tick();
  const shutdown = new AbortController();
  const router = new WakeRouter(store);
  const heartbeats = new Heartbeats(store, resolved.waiterTtlMs);
  const parked = new ParkedWaits({
    store, waiterTtlMs: resolved.waiterTtlMs, heartbeats,
    onError: (error, what) => {
      metrics.storeError();
      app.log.warn({ err: error }, `${what} failed`);
    },
  });
  const ctx: ServerContext = {
    locks, store, hub, metrics, options: resolved, shutdown: unlimitListeners(shutdown.signal), waits: new Map(), recent: new RecentGrants(), router, parked,
    tickets: new TicketOwners(), holding: { count: 0 }, heartbeats,
  };

  // Bodies are JSON, sent as application/json: what a web page can send without a preflight
  // (text/plain, forms) is refused before any route runs, and so are foreign origins and hosts.
  decorateRequests(app);
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, json);
  app.addHook('onRequest', webGuard({
    allowedOrigins: resolved.allowedOrigins, checkHost: resolved.tokens === null,
    listening: () => {
      const address = app.server.address();
      return typeof address === 'object' && address !== null ? address.address : null;
    },
  }));
  app.setErrorHandler(onError);
  app.setNotFoundHandler((request, reply) => sendError(reply, new NotFoundError(`The route ${request.method} ${redactUrl(request.url.split('?')[0]!)}`)));
  // A callback hook, not an async one: no promise per answer.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });

  const routes: RouteSpec[] = [];
  routes.push(...leaseRoutes(ctx), ...ticketRoutes(ctx), ...lockRoutes(ctx), ...streamRoutes(ctx), ...miscRoutes(ctx, () => routes));
  const tokens = resolved.tokens;
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      schema: route.schema,
      // A callback hook, not an async one: no promise and no extra microtask turn per request.
      onRequest: (request, reply, done) => {
        markStart(request);
        if (shutdown.signal.aborted && route.access !== 'none') {
          reply.header('connection', 'close');
          done(new StoreUnavailableError('the server is shutting down; send the request again (to another instance)'));
          return;
        }
        if (route.access === 'none') {
          done();
          return;
        }
        let principal;
        try {
          principal = tokens === null ? ANONYMOUS : tokens.authenticate(request.headers.authorization);
        } catch (error) {
          done(error as Error);
          return;
        }
        setPrincipal(request, principal);
        done();
      },
      handler: route.handler,
    });
  }

  // A waiting client whose machine vanished (no FIN) is noticed by TCP keep-alive probes.
  app.server.on('connection', (socket: Socket) => socket.setKeepAlive(true, TCP_KEEPALIVE_MS));

  // Expiries are noticed, announced and handed off promptly even when nobody calls the store.
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    store.sweep().then(
      () => (sweeping = false),
      (error: unknown) => {
        sweeping = false;
        metrics.storeError();
        app.log.warn({ err: error }, 'store sweep failed');
      },
    );
  }, resolved.sweepIntervalMs);
  sweeper.unref();

  app.addHook('preClose', async () => {
    clearInterval(sweeper);
    follower?.stop();
    shutdown.abort(new StoreUnavailableError('the server is shutting down'));
    // Nobody can come back for a parked wait now: leave the queue (releasing what it was granted).
    await parked.close();
    heartbeats.close();
  });
  app.addHook('onClose', async () => {
    unwatch();
    router.close();
    await locks.close();
  });
  return app;
}
