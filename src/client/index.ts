/**
 * The http store: registers `http:` and `https:` with `openLocks`, so a holdfast server is one
 * more store URL (`openLocks('http://127.0.0.1:7070', { owner, storeOptions: { token } })`).
 */
import { registerStore } from '../engine/open.js';
import { createHttpStore, type HttpStoreOptions } from './http-store.js';

for (const scheme of ['http', 'https']) {
  registerStore(scheme, async (url, options) => createHttpStore(url, options as HttpStoreOptions));
}

export { HttpStore, createHttpStore, HTTP_STORE_DEFAULTS, type HttpStoreOptions } from './http-store.js';
