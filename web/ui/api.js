// Calls to the holdfast API. The token lives only in this tab's sessionStorage and is sent in the
// Authorization header (never in a URL). State-changing calls send a JSON body with
// `Content-Type: application/json`, as the server requires of them.

const TOKEN_KEY = 'holdfast-token';

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  /** `{ name, admin, tokens }` from /v1/whoami, or null before it is known. */
  who: null,
  /** `/v1/info`, or null. */
  info: null,
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders() {
  return session.token ? { authorization: `Bearer ${session.token}` } : {};
}

export function setToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The server checks tokens and this tab has none yet: calls would only be refused. */
export const needsToken = () => Boolean(session.info?.tokens) && !session.token;

async function send(method, path, accept) {
  const init = { method, headers: { accept, ...authHeaders() }, cache: 'no-store' };
  if (method !== 'GET') {
    init.headers['content-type'] = 'application/json';
    init.body = '{}';
  }
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server cannot be reached');
  }
}

/** JSON answer of `method path`; throws ApiError with the server's code and sentence. */
export async function api(method, path) {
  const res = await send(method, path, 'application/json');
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const error = body && body.error;
    throw new ApiError(res.status, error?.code ?? `HTTP_${res.status}`, error?.message ?? `HTTP ${res.status}`);
  }
  return body;
}

/** Plain-text answer (Prometheus metrics). */
export async function text(path) {
  const res = await send('GET', path, 'text/plain');
  if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, `HTTP ${res.status}`);
  return res.text();
}

/** `/v1/info` and, unless a token is needed and missing, `/v1/whoami`. */
export async function identify() {
  session.info = await api('GET', '/v1/info');
  session.who = null;
  if (needsToken()) return;
  session.who = await api('GET', '/v1/whoami');
}
