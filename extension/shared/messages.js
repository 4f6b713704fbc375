/**
 * What the extension's parts say to each other, and the few rules they all need.
 *
 * Requests (popup / content script → service worker) go through chrome.runtime.sendMessage as
 * `{rpc: <name>, ...args}` and are answered `{ok: true, data}` or `{ok: false, error: {code,
 * message}}`: sendMessage wakes a stopped service worker, so a request never finds it gone.
 * Pushes (service worker → tabs and popup) go over long-lived ports named by PORT; a port dies
 * with the worker, and its owner reconnects it (which starts the worker again).
 */

export const DEFAULT_SERVER_URL = 'http://127.0.0.1:8000';

export const PORT = Object.freeze({ TAB: 'sharetube-tab', POPUP: 'sharetube-popup' });

/** Push message types, service worker → ports. */
export const PUSH = Object.freeze({ STATUS: 'status', STATE: 'state', ROLE: 'role' });

/** Connection states shown in the popup and the overlay. */
export const CONN = Object.freeze({
  SIGNED_OUT: 'signed_out',
  CONNECTING: 'connecting',
  OPEN: 'open',
  CLOSED: 'closed',
});

/** Room codes as the rooms service makes them (ROOM_CODE_PATTERN in services/common/contracts). */
export const ROOM_CODE_RE = /^[A-Za-z0-9]{4,16}$/;

/** A YouTube video id (VIDEO_ID_PATTERN in services/common/contracts/models.py). */
export const VIDEO_ID_RE = /^[A-Za-z0-9_-]{11}$/;

/**
 * Whether `userId` may move the room's playback, mirroring services/rooms/permissions.py.
 * Only for the UI (disable buttons, snap back at once): the rooms service decides for real.
 * @param {object|undefined} state room state (settings, members)
 * @param {string|undefined} userId
 */
export function canControl(state, userId) {
  if (!state || !userId) return false;
  const me = (state.members ?? []).find((m) => m.user_id === userId);
  const role = me?.role ?? (state.room?.owner_id === userId ? 'owner' : null);
  if (!role) return false;
  const mode = state.settings?.control_mode ?? 'owner_only';
  if (mode === 'any') return true;
  if (mode === 'operators') return role === 'owner' || role === 'operator';
  return role === 'owner';
}

/** The `v` parameter of a youtube.com/watch URL, or null. */
export function videoIdFromUrl(href) {
  try {
    const url = new URL(href);
    if (url.pathname !== '/watch') return null;
    const id = url.searchParams.get('v');
    return id && VIDEO_ID_RE.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** The socket URL for a server base URL: http → ws, https → wss, path /ws. */
export function socketUrl(serverUrl) {
  const url = new URL(serverUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/ws`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** The mobile remote's address for a room, the text of the overlay's QR code. */
export function remoteUrl(serverUrl, code) {
  return `${serverUrl.replace(/\/+$/, '')}/mobile-remote?room=${encodeURIComponent(code)}`;
}

/** Send an rpc to the service worker; resolves with its data, rejects with {code, message}. */
export async function rpc(name, args = {}) {
  let reply;
  try {
    reply = await chrome.runtime.sendMessage({ rpc: name, ...args });
  } catch (err) {
    throw Object.assign(new Error(err?.message ?? String(err)), { code: 'extension' });
  }
  if (!reply) throw Object.assign(new Error('no answer from the extension'), { code: 'extension' });
  if (!reply.ok) {
    throw Object.assign(new Error(reply.error?.message ?? 'failed'), { code: reply.error?.code ?? 'internal' });
  }
  return reply.data;
}
