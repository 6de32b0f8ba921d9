/** holdfast: locks and leases with fencing tokens, fair queues and push hand-off. */
export { openLocks, openStore, registerStore, type StoreOpener } from './engine/open.js';
export { Locks, CLOSE_DEFAULTS, type AcquireOptions, type CloseOptions, type HistoryOptions, type ListOptions, type LocksEvents, type ReleaseOwnerOptions } from './engine/locks.js';
export type { Granted } from './engine/wait.js';
export { Lease, type LeaseEvents, type LeaseState, type RenewOptions } from './engine/lease.js';
export { LOCKS_DEFAULTS, type LocksOptions } from './engine/options.js';
export {
  HoldfastError, InvalidRequestError, LockBusyError, WaitTimeoutError, LeaseLostError, NotFoundError,
  UnauthorizedError, ForbiddenError, StoreUnavailableError, ServerBusyError, describeHolders,
  type ErrorCode, type Holder, type BusyData,
} from './model/errors.js';
export { parseDuration, type Duration } from './model/duration.js';
export { validateKey, keyProblem, ancestorsOf, keysOverlap } from './model/keys.js';
export { validateRequest, newLeaseId, LIMITS, type RequestInput, type ResourceInput } from './model/request.js';
export { resourcesConflict, requestsConflict } from './model/conflict.js';
export type {
  Mode, Resource, Metadata, LockRequest, LeaseRecord, HeldLock, QueuedWaiter, LockTable, HistoryEvent, HistoryQuery, HistoryType,
} from './model/types.js';
export type {
  LockStore, StoreInfo, StoreChange, AcquireOutcome, PollOutcome, RenewOutcome, CallOptions, EndOptions,
} from './stores/store.js';
export { createMemoryStore, type MemoryStoreOptions } from './stores/memory/store.js';
export * from './fencing/index.js';
export * from './surfaces.js';
