/**
 * The http store: a holdfast server is one more store URL
 * (`openLocks('http://127.0.0.1:7070', { owner, storeOptions: { token } })`); `openLocks`
 * registers `http:` and `https:` and loads this module on first use.
 */
export { HttpStore, createHttpStore, HTTP_STORE_DEFAULTS, type HttpStoreOptions } from './http-store.js';
