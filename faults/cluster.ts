/**
 * The private, restartable PostgreSQL cluster of the Postgres restart tests, reused as is: the
 * harness starts its own cluster for a `postgres://` store when `restart-store` is among the
 * nemeses, so it can `pg_ctl restart -m immediate` without touching the machine's cluster.
 */
export { PrivateCluster, clusterUnavailable, freePort, PG_BIN } from '../test/stores/postgres/cluster.js';
