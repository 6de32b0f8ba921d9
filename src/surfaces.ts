/**
 * The faces of holdfast beyond the library: the http store (registers `http:`/`https:` with
 * `openLocks`), the server (Fastify loads on first use), and the Express/Fastify middleware.
 */
export * from './client/index.js';
export * from './server/index.js';
export { expressLock, type ExpressLockOptions, type ExpressResponseLike, type ExpressNext } from './integrations/express.js';
export { fastifyLock, type FastifyLockOptions, type FastifyLock } from './integrations/fastify.js';
export { blockedSentence, type RouteLockOptions } from './integrations/route-lock.js';
