/**
 * Sign-in against the ShareTube server: guest (POST /auth/guest) and Google, through
 * chrome.identity.launchWebAuthFlow on the server's GET /auth/google.
 *
 * The Google flow: /auth/google?redirect_uri=<chrome.identity redirect URL> redirects to
 * Google, Google back to the server's callback, and the server finally redirects to
 * redirect_uri with the ShareTube token in the fragment (`#token=...`, or `#error=...&
 * error_description=...`; services/gateway/signin.py). A server that cannot do Google sign-in
 * answers /auth/google with an error status and `{"error": {"code", "message"}}`; that is
 * shown as is, before any window opens.
 */

const trimBase = (serverUrl) => serverUrl.replace(/\/+$/, '');

/** An Error with the server's error code, or `http_<status>` for a body without one. */
async function httpError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status
  }
  const code = body?.error?.code ?? `http_${response.status}`;
  const detail = typeof body?.detail === 'string' ? body.detail : null;
  const message = body?.error?.message ?? detail ?? `the server answered ${response.status}`;
  return Object.assign(new Error(message), { code });
}

/** @returns {Promise<{token: string, user: {id: string, name: string}}>} */
export async function guestSignIn(serverUrl, name) {
  const response = await fetch(`${trimBase(serverUrl)}/auth/guest`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  return { token: body.token, user: body.user };
}

/** GET /auth/me: the user a token names; rejects with code `unauthorized` for a dead token. */
export async function whoAmI(serverUrl, token) {
  const response = await fetch(`${trimBase(serverUrl)}/auth/me`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  return body.user ?? body;
}

function tokenFrom(finalUrl) {
  const url = new URL(finalUrl);
  const hash = new URLSearchParams(url.hash.replace(/^#/, ''));
  for (const params of [hash, url.searchParams]) {
    const token = params.get('token') ?? params.get('access_token');
    if (token) return token;
  }
  const code = hash.get('error') ?? url.searchParams.get('error');
  const message = hash.get('error_description') ?? url.searchParams.get('error_description');
  throw Object.assign(new Error(message ?? code ?? 'The sign-in ended without a token.'), {
    code: code ?? 'sign_in_failed',
  });
}

/** @returns {Promise<{token: string, user: {id: string, name: string}}>} */
export async function googleSignIn(serverUrl) {
  const redirectUri = chrome.identity.getRedirectURL('google');
  const start = `${trimBase(serverUrl)}/auth/google?redirect_uri=${encodeURIComponent(redirectUri)}`;
  const probe = await fetch(start, { redirect: 'manual' });
  if (probe.type !== 'opaqueredirect' && !probe.ok) throw await httpError(probe);
  const finalUrl = await chrome.identity.launchWebAuthFlow({ url: start, interactive: true });
  const token = tokenFrom(finalUrl);
  return { token, user: await whoAmI(serverUrl, token) };
}

/** POST /auth/logout, best effort: the local sign-out happens whatever it answers. */
export async function signOut(serverUrl, token) {
  try {
    await fetch(`${trimBase(serverUrl)}/auth/logout`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    });
  } catch {
    // offline or no such endpoint yet: the token is forgotten locally anyway
  }
}
