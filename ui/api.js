// The /api/v1 client and the session (a JWT in sessionStorage; the API key is only
// ever held by the sign-in form while the token is fetched).

const KEY = 'kurz.session';
let expiryTimer;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function decodePayload(jwt) {
  try {
    const b64 = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

export function session() {
  let s;
  try {
    s = JSON.parse(sessionStorage.getItem(KEY));
  } catch {
    s = null;
  }
  if (!s || typeof s.token !== 'string' || !(s.expiresAt > Date.now())) {
    if (s) sessionStorage.removeItem(KEY);
    return null;
  }
  const claims = decodePayload(s.token);
  return { token: s.token, expiresAt: s.expiresAt, tier: claims.tier || 'free' };
}

export function onSessionChange(fn) {
  listeners.add(fn);
}

function changed(reason) {
  clearTimeout(expiryTimer);
  const s = session();
  if (s) expiryTimer = setTimeout(() => signOut('expired'), Math.min(s.expiresAt - Date.now(), 2 ** 31 - 1));
  for (const fn of listeners) fn(reason);
}

export function signOut(reason = 'signed-out') {
  sessionStorage.removeItem(KEY);
  changed(reason);
}

export async function signIn(apiKey) {
  const res = await request('/api/v1/auth/token', { method: 'POST', headers: { 'X-API-Key': apiKey }, auth: false });
  const expiresIn = Number(res.expires_in) || 0;
  // A few seconds early, so a request is never sent with a token about to lapse.
  const expiresAt = Date.now() + Math.max(0, expiresIn - 5) * 1000;
  sessionStorage.setItem(KEY, JSON.stringify({ token: res.access_token, expiresAt }));
  changed('signed-in');
}

// Starts the expiry timer for a session that survived a reload.
export function resume() {
  changed('resumed');
}

export function randomKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// request(path, {method, body, headers, auth, as: 'json'|'blob', signal})
export async function request(path, opts = {}) {
  const { method = 'GET', body, auth = true, as = 'json', signal } = opts;
  const headers = { ...(opts.headers || {}) };
  const s = auth ? session() : null;
  if (auth && s) headers.Authorization = 'Bearer ' + s.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK', 'Could not reach the server. Check your connection and try again.');
  }
  if (res.status === 401 && s) {
    signOut('expired');
    throw new ApiError(401, 'UNAUTHORIZED', 'Your session has ended. Please sign in again.');
  }
  if (!res.ok && res.status !== 207) {
    let data = {};
    try {
      data = await res.json();
    } catch {
      /* not JSON */
    }
    let msg = data.error || `The server answered ${res.status} ${res.statusText}.`;
    let after = null;
    if (res.status === 429) {
      after = Number(data.retry_after ?? res.headers.get('Retry-After')) || null;
      msg = `Too many requests. Try again in ${after || 'a few'} seconds.`;
    }
    const e = new ApiError(res.status, data.code || 'HTTP_' + res.status, msg);
    e.retryAfter = after;
    throw e;
  }
  if (res.status === 204) return null;
  return as === 'blob' ? res.blob() : res.json();
}

export const api = {
  create: (body, idem) => request('/api/v1/urls', { method: 'POST', body, headers: idem ? { 'X-Idempotency-Key': idem } : {} }),
  list: ({ limit, cursor, q, order }, signal) => {
    const p = new URLSearchParams({ limit: String(limit) });
    if (cursor) p.set('cursor', cursor);
    if (q) p.set('q', q);
    if (order && order !== 'desc') p.set('order', order);
    return request('/api/v1/urls?' + p, { signal });
  },
  info: (code) => request('/api/v1/urls/' + encodeURIComponent(code)),
  update: (code, body) => request('/api/v1/urls/' + encodeURIComponent(code), { method: 'PATCH', body }),
  remove: (code) => request('/api/v1/urls/' + encodeURIComponent(code), { method: 'DELETE' }),
  stats: (code, params, signal) =>
    request(`/api/v1/urls/${encodeURIComponent(code)}/stats?` + new URLSearchParams(params), { signal }),
  qr: (code, format, size) =>
    request(`/api/v1/urls/${encodeURIComponent(code)}/qr?` + new URLSearchParams({ format, size: String(size) }), { as: 'blob' }),
  bulk: (urls) => request('/api/v1/urls/bulk', { method: 'POST', body: { urls } }),
  createUser: (body) => request('/api/v1/users', { method: 'POST', body }),
};

// API messages name JSON fields; say them in words.
export function plain(err) {
  if (err.code === 'ALIAS_EXISTS') return 'This alias is already taken. Choose another one.';
  let m = String(err.message || '')
    .replace(/\boriginal_url\b/g, 'the URL')
    .replace(/\bcustom_alias\b/g, 'the alias')
    .replace(/\bexpires_in_days\b/g, 'the number of days')
    .replace(/\bexpires_at\b/g, 'the expiry date')
    .replace(/\bredirect_type\b/g, 'the redirect type')
    .replace(/\bstart_date\b/g, 'the start date')
    .replace(/\bend_date\b/g, 'the end date')
    .replace(/\bmetadata\.(\w+)/g, 'the $1 value');
  m = m.charAt(0).toUpperCase() + m.slice(1);
  if (m && !/[.!?]$/.test(m)) m += '.';
  return m;
}

// Which form field an API error belongs to (null: the form as a whole).
export function errorField(err) {
  if (err.code === 'INVALID_URL') return 'url';
  if (err.code === 'INVALID_ALIAS' || err.code === 'ALIAS_EXISTS') return 'alias';
  if (err.code === 'INVALID_REQUEST' && /expir/i.test(err.message)) return 'expiry';
  if (err.code === 'INVALID_REQUEST' && /email/i.test(err.message)) return 'email';
  if (err.code === 'INVALID_REQUEST' && /metadata\.campaign/i.test(err.message)) return 'campaign';
  if (err.code === 'INVALID_REQUEST' && /metadata\.source/i.test(err.message)) return 'source';
  return null;
}
