// The API client: a bearer token from sessionStorage when the API asks for
// one (401), asked for once and shared by every request waiting on it.
const KEY = 'flowscope-token';
let waiting = null;

export class ApiError extends Error {}

function askToken(refused) {
  if (waiting) return waiting;
  const form = document.getElementById('tokenform');
  const input = document.getElementById('token');
  form.querySelector('p').textContent = refused ? 'The API refused that token; enter it again.'
    : 'The API needs a bearer token.';
  form.hidden = false;
  input.focus();
  waiting = new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      form.hidden = true;
      waiting = null;
      resolve();
    };
  });
  return waiting;
}

export async function api(path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  const url = qs.toString() ? `${path}?${qs}` : path;
  for (;;) {
    const tok = sessionStorage.getItem(KEY);
    const r = await fetch(url, { headers: tok ? { Authorization: `Bearer ${tok}` } : {} });
    if (r.status === 401) {
      await askToken(Boolean(tok));
      continue;
    }
    let body;
    try {
      body = await r.json();
    } catch {
      throw new ApiError(`${path}: HTTP ${r.status}`);
    }
    if (!r.ok) throw new ApiError(body.error || `HTTP ${r.status}`);
    return body;
  }
}

// Runs fn over items with at most `width` requests at once (the API's query
// pool is small; a burst would be answered 503).
export async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}
