/**
 * Who is signed in on this browser, and one socket to the gateway that comes back by itself.
 *
 * The token is kept in localStorage, shared by the three pages (same origin). Google sign-in
 * is the server's redirect flow: /auth/google?redirect_uri=<this page> ends on this page with
 * `#token=...` (or `#error=...`) in the fragment, which browsers never send to a server; the
 * page takes it and removes it from the address bar.
 */
import { ShareTubeClient } from '/static/js/sharetube-client.js';

const TOKEN_KEY = 'sharetube.token';

export function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: sign in again on each load
  }
}

function storeToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled
  }
}

/**
 * The claims of a token, for display only (name, adm): the gateway verifies the signature,
 * the services decide what the user may do.
 */
export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** An Error with the server's error code, or `http_<status>`. */
async function httpError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  const code = body?.error?.code ?? `http_${response.status}`;
  const message = body?.error?.message ?? `The server answered ${response.status}.`;
  return Object.assign(new Error(message), { code });
}

/**
 * After a Google sign-in the page is loaded with the result in its fragment: keep the token,
 * clean the address bar. Returns the sign-in error, if the sign-in failed.
 * @returns {{code: string, message: string} | null}
 */
export function takeSignInResult() {
  if (!location.hash) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  const error = params.get('error');
  if (!token && !error) return null;
  history.replaceState(null, '', location.pathname + location.search);
  if (token) {
    storeToken(token);
    return null;
  }
  return { code: error, message: params.get('error_description') || 'Sign-in failed.' };
}

/** GET /auth/me; a token the server no longer accepts is forgotten. */
export async function currentUser() {
  const token = storedToken();
  if (!token) return null;
  const response = await fetch('/auth/me', { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    storeToken(null);
    return null;
  }
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  return body.user ?? body;
}

/** POST /auth/guest. */
export async function signInAsGuest(name) {
  const response = await fetch('/auth/guest', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  storeToken(body.token);
  return body.user;
}

/**
 * Go through Google and come back to this page. A server without Google sign-in answers the
 * start with an error, shown before the page is left.
 */
export async function signInWithGoogle() {
  const back = location.origin + location.pathname + location.search;
  const start = `/auth/google?redirect_uri=${encodeURIComponent(back)}`;
  const probe = await fetch(start, { redirect: 'manual' });
  if (probe.type !== 'opaqueredirect' && !probe.ok) throw await httpError(probe);
  location.assign(start);
}

/** POST /auth/logout (the token stops working everywhere), and forget it here. */
export async function signOut() {
  const token = storedToken();
  storeToken(null);
  if (!token) return;
  try {
    await fetch('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  } catch {
    // offline: the token is forgotten here anyway
  }
}

export function socketUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

/**
 * A connected ShareTubeClient that comes back by itself: the client's own `reconnect` (backoff
 * with jitter, the drain window a restarting gateway names, rooms re-joined with a fresh
 * snapshot, unanswered commands sent again under the same id). This adds what only a page
 * knows: a token refused at the upgrade (a browser sees only a plain close) means the user
 * was signed out, and a tab that comes back to the foreground or online retries at once.
 *
 * @param {string} token
 * @param {{onStatus?: (status: 'connecting'|'open'|'reconnecting'|'signed_out') => void}} [hooks]
 * @returns {{client: ShareTubeClient, ready: Promise<void>, stop: () => void}}
 */
export function liveClient(token, { onStatus = () => {} } = {}) {
  const client = new ShareTubeClient({ url: socketUrl(), token, reconnect: true });
  let stopped = false;
  const stop = (status) => {
    if (stopped) return;
    stopped = true;
    client.disconnect();
    if (status) onStatus(status);
  };
  const retryNow = () => {
    if (!stopped && !client.connected) client.connect().catch(() => {});
  };

  client.on('open', () => onStatus('open'));
  client.on('close', ({ code }) => {
    if (code === 4001) stop('signed_out'); // the server closed it: signed out elsewhere
  });
  client.on('reconnecting', async ({ attempt }) => {
    if (stopped) return;
    onStatus('reconnecting');
    if (attempt >= 3 && (await currentUser().catch(() => undefined)) === null) stop('signed_out');
  });
  addEventListener('online', retryNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') retryNow();
  });

  onStatus('connecting');
  const ready = client.connect();
  ready.catch(() => {}); // reported as `close`, then retried
  return { client, ready, stop: () => stop(null) };
}

/** Renders the sign-in controls into `root`: a guest name form and a Google button. */
export function signInForm(root, { onSignedIn, onError, guest = true, prompt = 'Sign in' }) {
  const id = `guest-name-${Math.random().toString(36).slice(2, 8)}`;
  root.replaceChildren();
  const heading = document.createElement('h2');
  heading.textContent = prompt;
  if (root.id) heading.id = `${root.id}-title`;
  root.append(heading);
  if (guest) {
    const form = document.createElement('form');
    form.className = 'row';
    form.innerHTML = `<div class="grow"><label for="${id}">Your name</label>
      <input id="${id}" name="name" autocomplete="nickname" maxlength="40" required></div>
      <button class="primary" type="submit">Continue as guest</button>`;
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const name = form.elements.name.value.trim();
      if (!name) return;
      try {
        onSignedIn(await signInAsGuest(name));
      } catch (err) {
        onError(err);
      }
    });
    root.append(form);
  }
  const google = document.createElement('button');
  google.type = 'button';
  google.textContent = 'Sign in with Google';
  google.className = guest ? '' : 'primary';
  google.addEventListener('click', () => signInWithGoogle().catch(onError));
  const line = document.createElement('p');
  line.className = guest ? 'small muted' : '';
  if (guest) line.append('or ');
  line.append(google);
  root.append(line);
}
