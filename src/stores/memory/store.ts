/** `memory:`: the in-process store. The fastest path; nothing survives the process. */
import { SyncTableStore } from '../table/sync-store.js';
import { MemoryState } from './state.js';

export interface MemoryStoreOptions {
  /**
   * How many history events to keep in memory.
   * @default 10000
   */
  historyLimit?: number;
}

export const MEMORY_DEFAULTS = Object.freeze({ historyLimit: 10_000 });

export function createMemoryStore(options: MemoryStoreOptions = {}): SyncTableStore {
  const historyLimit = options.historyLimit ?? MEMORY_DEFAULTS.historyLimit;
  const state = new MemoryState({ historyLimit, endedLimit: 100_000 });
  return new SyncTableStore({
    info: { kind: 'memory', durable: false, wakeups: 'complete' },
    state,
    transact: (fn) => fn(),
    direct: true,
    read: (fn) => fn(),
    close: () => {},
  });
}
