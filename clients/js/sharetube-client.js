/**
 * ShareTube protocol client, shared by the Chrome extension (service worker and content script)
 * and the web portals. One ES module: no build step, no dependencies; runs in browsers and Node 20.
 *
 * Three layers, the lower two pure so they can be tested without sockets:
 *   - room state store: applySnapshot / applyEvent / expectedPositionMs
 *   - drift correction: driftCorrection
 *   - ShareTubeClient: the socket, request/reply correlation, per-room stores, clock sync
 *
 * Wire protocol and sync rules: DESIGN.md, "Wire protocol" and "Synchronisation".
 */

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {"idle" | "starting" | "playing" | "paused" | "midroll"} PlaybackStatus
 *
 * @typedef {object} Playback
 * @property {PlaybackStatus} status
 * @property {string|null} [entry_id]
 * @property {string|null} [video_id]
 * @property {number} position_ms   position at anchor_ms
 * @property {number|null} anchor_ms server-time instant at which position_ms holds
 * @property {number} [rate]        playback rate, 1 when absent
 * @property {number} [duration_ms] when known, the expected position never passes it
 *
 * @typedef {"playback" | "members" | "settings" | "queue" | "chat"} Part
 *
 * @typedef {object} Snapshot  reply data of `join` and `room.sync`
 * @property {object} room
 * @property {object} settings
 * @property {object[]} members
 * @property {object[]} queue
 * @property {Playback} playback
 * @property {object[]} chat
 * @property {Partial<Record<Part, number>>} [versions] room version at which each part last changed
 * @property {number} [v]  max of versions
 *
 * @typedef {Snapshot & {versions: Record<Part, number>, v: number, lastEventV: number|null}} RoomState
 *   lastEventV: v of the last event received for the room, null right after a snapshot.
 *
 * @typedef {object} ServerEvent
 * @property {string} type
 * @property {string} room
 * @property {number} v
 * @property {*} data
 *
 * @typedef {object} ApplyResult
 * @property {RoomState} state  a new object when anything changed; the input is never mutated
 * @property {boolean} applied  the event changed a part
 * @property {boolean} gap      the event's v does not follow the previous event's v
 */

/** The parts of a room state that events replace (or, for chat, append to; members merge a delta). */
export const PARTS = Object.freeze(['playback', 'members', 'settings', 'queue', 'chat']);

/** Chat messages kept per room: enough scroll-back for the overlay, bounded memory. */
export const CHAT_KEEP = 200;

const IDLE_PLAYBACK = Object.freeze({
  status: 'idle', entry_id: null, video_id: null, position_ms: 0, anchor_ms: null, rate: 1,
});

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** An error reply from the server, or a client-side failure (`timeout`, `disconnected`, ...). */
export class ShareTubeError extends Error {
  /**
   * @param {string} code     stable code from the server's catalogue, or a client-side one
   * @param {string} message
   * @param {object} [details] any other fields of the server's error object
   */
  constructor(code, message, details) {
    super(message);
    this.name = 'ShareTubeError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** Codes this client produces itself, never sent by the server. */
export const CLIENT_ERROR_CODES = Object.freeze(['timeout', 'disconnected', 'not_joined', 'bad_reply']);

/**
 * What to tell someone whose socket was taken out of a room (the client's `evicted` event).
 * @param {string} room
 * @param {string} [reason] `kicked`, `banned` or `closed`
 */
export function evictionMessage(room, reason) {
  if (reason === 'closed') return `Room ${room} was closed by its owner or an admin.`;
  return `You were removed from room ${room}${reason ? ` (${reason})` : ''}.`;
}

// ---------------------------------------------------------------------------------------------
// Room state store (pure)
// ---------------------------------------------------------------------------------------------

const finiteOr = (x, fallback) => (Number.isFinite(x) ? x : fallback);
const arrayOr = (x) => (Array.isArray(x) ? x : []);

/**
 * Build a room state from a `join` / `room.sync` snapshot.
 * A snapshot without `versions` (older server) counts every part as changed at `v`.
 * @param {Snapshot} snapshot
 * @returns {RoomState}
 */
export function applySnapshot(snapshot) {
  const s = snapshot ?? {};
  const v0 = finiteOr(s.v, 0);
  const versions = {};
  for (const part of PARTS) versions[part] = finiteOr(s.versions?.[part], v0);
  return {
    ...s,
    room: s.room ?? null,
    settings: s.settings ?? {},
    members: arrayOr(s.members),
    queue: arrayOr(s.queue),
    playback: s.playback ?? IDLE_PLAYBACK,
    chat: arrayOr(s.chat).slice(-CHAT_KEEP),
    versions,
    v: Math.max(v0, ...Object.values(versions)),
    lastEventV: null,
  };
}

/**
 * Event data for `queue` (and a `members` event carrying the whole list) is the whole array;
 * a server that wraps it (`{entries: [...]}` / `{members: [...]}`) is accepted too, so the
 * wire can grow metadata.
 */
function listFrom(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (Array.isArray(data?.[key])) return data[key];
  return [];
}

/** The new value of `part` after an event carrying `data`. */
function reducePart(state, part, data) {
  switch (part) {
    case 'playback': return data ?? IDLE_PLAYBACK;
    case 'settings': return data ?? {};
    case 'queue': return listFrom(data, 'entries', 'queue');
    case 'members': return isMembersDelta(data) ? mergeMembers(state.members, data) : listFrom(data, 'members');
    case 'chat': return reduceChat(state.chat, data);
    default: return state[part];
  }
}

const isMembersDelta = (data) =>
  data !== null && typeof data === 'object' && !Array.isArray(data)
  && (Array.isArray(data.changed) || Array.isArray(data.gone));

/** The order of the members list, a snapshot's: (joined_at_ms, user_id); no joined_at_ms last. */
function memberOrder(a, b) {
  const ja = finiteOr(a?.joined_at_ms, Infinity);
  const jb = finiteOr(b?.joined_at_ms, Infinity);
  if (ja !== jb) return ja < jb ? -1 : 1;
  const ia = String(a?.user_id ?? '');
  const ib = String(b?.user_id ?? '');
  return ia < ib ? -1 : ia > ib ? 1 : 0;
}

/**
 * Merge a `members` event's delta `{changed: [Member], gone: [user_id]}` into a members list
 * (the event's other form, a whole array, replaces the list). An entry with a changed user's
 * id is replaced in place (a listed member's joined_at_ms never changes); a new one goes where
 * a fresh snapshot lists it, by (joined_at_ms, user_id); `gone` ids are dropped. The result
 * equals the snapshot's list at the event's version. `members` is not mutated.
 * @param {object[]} members
 * @param {{changed?: object[], gone?: string[]}} delta
 * @returns {object[]}
 */
export function mergeMembers(members, delta) {
  const gone = new Set(arrayOr(delta?.gone));
  const changed = new Map();
  for (const m of arrayOr(delta?.changed)) if (m && typeof m === 'object') changed.set(m.user_id, m);
  const out = [];
  for (const m of arrayOr(members)) {
    const id = m?.user_id;
    if (gone.has(id)) continue;
    if (changed.has(id)) {
      out.push(changed.get(id));
      changed.delete(id);
    } else {
      out.push(m);
    }
  }
  for (const m of changed.values()) {
    let at = out.length;
    while (at > 0 && memberOrder(out[at - 1], m) > 0) at -= 1;
    out.splice(at, 0, m);
  }
  return out;
}

/**
 * A `chat` event carries one new message, or `{deleted: id}` when a moderator removed one
 * (`chat.delete`): the message is dropped wherever it is in the list.
 */
export function reduceChat(chat, data) {
  if (typeof data?.deleted === 'string' && !('text' in data)) {
    return chat.filter((message) => message?.id !== data.deleted);
  }
  return [...chat, data].slice(-CHAT_KEEP);
}

const followsLast = (state, v) => state.lastEventV === null || v === state.lastEventV + 1;

/**
 * Fold one event into a room state. Never throws, never mutates `state`.
 *
 * - A known event applies only when `v > versions[type]`; older or repeated ones are ignored
 *   and are not a gap (they are already in the state, typically raced with a snapshot).
 * - A gap is an applied-or-newer event whose v is not `lastEventV + 1`. The event still applies
 *   (it carries the whole new part, except chat and a members delta); the caller should fetch
 *   a fresh snapshot.
 * - Unknown types change no part, but when they carry a newer v they advance `lastEventV`,
 *   so a server adding a new event kind on the same version sequence does not look like a gap.
 * @param {RoomState} state
 * @param {ServerEvent} event
 * @returns {ApplyResult}
 */
export function applyEvent(state, event) {
  const v = event?.v;
  if (!state || !Number.isFinite(v)) return { state, applied: false, gap: false };
  const type = event.type;

  if (!PARTS.includes(type)) {
    if (v <= state.v || (state.lastEventV !== null && v <= state.lastEventV)) {
      return { state, applied: false, gap: false };
    }
    return { state: { ...state, lastEventV: v }, applied: false, gap: !followsLast(state, v) };
  }

  if (v <= state.versions[type]) return { state, applied: false, gap: false };
  const next = {
    ...state,
    [type]: reducePart(state, type, event.data),
    versions: { ...state.versions, [type]: v },
    v: Math.max(state.v, v),
    // max, not v: a late event must not move the gap baseline backwards.
    lastEventV: state.lastEventV === null ? v : Math.max(state.lastEventV, v),
  };
  return { state: next, applied: true, gap: !followsLast(state, v) };
}

/**
 * Where the room's video should be at server time `serverNowMs`.
 * `starting` holds still until the room switches to `playing` with a shared future anchor;
 * a future anchor means "start together at anchor_ms", so until then the position holds.
 * @param {Playback|null|undefined} playback
 * @param {number} serverNowMs
 * @returns {number} ms, never negative, never past `duration_ms` when known
 */
export function expectedPositionMs(playback, serverNowMs) {
  if (!playback || playback.status === 'idle') return 0;
  let pos = finiteOr(playback.position_ms, 0);
  const anchor = playback.anchor_ms;
  if (playback.status === 'playing' && Number.isFinite(anchor) && serverNowMs > anchor) {
    pos += (serverNowMs - anchor) * finiteOr(playback.rate, 1);
  }
  pos = Math.max(0, pos);
  const duration = playback.duration_ms;
  return Number.isFinite(duration) && duration > 0 ? Math.min(pos, duration) : pos;
}

// ---------------------------------------------------------------------------------------------
// Drift correction (pure)
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} DriftThresholds
 * @property {number} deadBandMs   |drift| at or below this: leave the player alone
 * @property {number} seekMs       |drift| at or above this: seek instead of nudging
 * @property {number} maxNudge     largest relative rate change (0.05 = ±5 %)
 * @property {number} closeWithinMs time the proportional nudge aims to close the drift in
 * @property {number} seekLeadMs   added to the seek target to cover the player's seek latency
 */

/** @type {Readonly<DriftThresholds>} */
export const DRIFT_DEFAULTS = Object.freeze({
  // Under one frame at 60 fps (16.7 ms) and under what people notice between screens in one
  // room; chasing less makes the rate flap on currentTime jitter. Syncplay's floor is 100 ms.
  deadBandMs: 15,
  // A seek on YouTube rebuffers for ~0.2-1 s and is visible; at the ±5 % clamp 1 s of drift
  // takes ~20 s to nudge away, past that a seek is the lesser evil. Syncplay seeks at ~2 s.
  seekMs: 1000,
  // Browsers keep pitch when changing playbackRate (preservesPitch defaults to true); ±5 % is
  // barely noticeable, and the usual nudge (drift < 20 ms → < 1 %) is not noticeable at all.
  maxNudge: 0.05,
  // Proportional gain: a drift d asks for rate change d / 2 s, so 100 ms drift → the 5 % clamp,
  // and re-evaluating every tick closes it with a ~2 s time constant, no overshoot.
  closeWithinMs: 2000,
  // 0 by default: YouTube's seek latency varies by device and buffer; callers measure it.
  seekLeadMs: 0,
});

/**
 * Decide how to bring the local player back to the room's expected position.
 * drift = actual - expected: positive means the player is ahead, so it slows down.
 * @param {{expectedMs: number, actualMs: number, rate?: number, thresholds?: Partial<DriftThresholds>}} input
 * @returns {{action: "none"|"nudge"|"seek", playbackRate: number, seekToMs: number|null, driftMs: number}}
 */
export function driftCorrection({ expectedMs, actualMs, rate = 1, thresholds = {} }) {
  const t = { ...DRIFT_DEFAULTS, ...thresholds };
  const driftMs = actualMs - expectedMs;
  const size = Math.abs(driftMs);
  if (size <= t.deadBandMs) return { action: 'none', playbackRate: rate, seekToMs: null, driftMs };
  if (size >= t.seekMs) {
    return { action: 'seek', playbackRate: rate, seekToMs: Math.max(0, expectedMs + t.seekLeadMs), driftMs };
  }
  // The player advances rate*(1+c) ms per wall ms against rate for the room, so the drift
  // shrinks by rate*c per ms; closing d in closeWithinMs needs c = -d / (rate * closeWithinMs).
  const wanted = -driftMs / (rate * t.closeWithinMs);
  const c = Math.min(t.maxNudge, Math.max(-t.maxNudge, wanted));
  return { action: 'nudge', playbackRate: rate * (1 + c), seekToMs: null, driftMs };
}

// ---------------------------------------------------------------------------------------------
// Clock (pure helpers)
// ---------------------------------------------------------------------------------------------

/**
 * One NTP-style sample: the server read its clock, by assumption, half-way through the round trip.
 * The error is half the asymmetry of the two legs, so the shortest round trip bounds it best.
 * @param {{t0: number, t1: number, serverMs: number}} sample client send, client receive, server time
 * @returns {{rttMs: number, offsetMs: number}} offsetMs: server time minus client time
 */
export function clockSample({ t0, t1, serverMs }) {
  const rttMs = t1 - t0;
  return { rttMs, offsetMs: serverMs - (t0 + rttMs / 2) };
}

/**
 * @param {{rttMs: number, offsetMs: number}[]} samples
 * @returns {{rttMs: number, offsetMs: number}|null} the one with the smallest round trip
 */
export function pickBestSample(samples) {
  let best = null;
  for (const s of samples) if (!best || s.rttMs < best.rttMs) best = s;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

const OPEN = 1; // WebSocket.OPEN; a constant so fakes and polyfills need not define it

/**
 * Commands never sent again after a reconnect: a clock sample is worthless late, and joins
 * (and leaving, and snapshots) are the reconnect's own business.
 */
const NOT_RESENT = new Set(['time.ping', 'join', 'room.sync', 'leave', 'drift.report']);
// A re-join after a reconnect that timed out is tried again after this, doubling up to the max.
const REJOIN_RETRY_MS = 1000;
const REJOIN_RETRY_MAX_MS = 16_000;

/**
 * A per-load random prefix for request ids. The server keys idempotency on (user, id), so ids
 * must not repeat across page reloads or across the extension's contexts: 8 base-36 digits are
 * ~41 bits, a collision between two live sessions of one user is negligible.
 */
function makeIdPrefix(random) {
  let out = '';
  for (let i = 0; i < 8; i++) out += Math.floor(random() * 36).toString(36);
  return out;
}

/** Decode a message event's data to a frame; non-JSON or non-object frames give null. */
function parseFrame(data) {
  let text = data;
  if (typeof data !== 'string') {
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) text = new TextDecoder().decode(data);
    else return null;
  }
  try {
    const frame = JSON.parse(text);
    return frame && typeof frame === 'object' ? frame : null;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} ClientOptions
 * @property {string} url                 e.g. "ws://127.0.0.1:8000/ws"
 * @property {string} token               JWT from POST /auth/guest or sign-in
 * @property {Function} [WebSocketImpl]    defaults to globalThis.WebSocket
 * @property {() => number} [now]          client clock in ms
 * @property {() => number} [random]       in [0, 1), for the id prefix
 * @property {(fn: Function, ms: number) => *} [setTimeout]
 * @property {(handle: *) => void} [clearTimeout]
 * @property {number} [clockSamples]       pings per clock sync
 * @property {number} [clockResyncMs]      re-sync period, 0 disables
 * @property {number} [pingTimeoutMs]      a ping slower than this is a useless sample anyway
 * @property {string} [idPrefix]           override the random id prefix
 * @property {boolean|ReconnectOptions} [reconnect] reconnect by itself after the socket drops
 *   (off by default: the extension's service worker supervises its own socket)
 *
 * @typedef {object} ReconnectOptions
 * @property {number} [minMs]   first delay (500)
 * @property {number} [maxMs]   longest delay (15000)
 * @property {number} [stableMs] an open socket that lasted this long resets the backoff (5000)
 */

/**
 * The protocol client. Emits (payload in brackets):
 * `open` {url}, `close` {code, reason, wasClean},
 * `snapshot` {room, state, snapshot}, `state` {room, state, cause},
 * `playback` | `queue` | `members` | `chat` | `settings` {room, v, data, state} (`data` as on the
 *   wire: for `members` usually a delta, {changed, gone}; `state.members` is the merged list),
 * `gap` {room, v, lastEventV}, `event` (every raw event frame, known or not),
 * `clock` {offsetMs, rttMs, samples}, `error` {source, room?, error},
 * `evicted` {room, reason} (kicked, banned, or the room was `closed`: the room is forgotten,
 *   not re-joined; `evictionMessage` says it in words),
 * `reconnecting` {attempt, delayMs, code} (with `reconnect` on: the next try is scheduled).
 *
 * With `reconnect` on, the client reconnects with exponential backoff and jitter (or within the
 * window a draining server names in its `reconnect` frame), re-joins its rooms (each gets a
 * fresh snapshot), and then sends again, with the same request ids, every command that had no
 * reply yet: the server applies a request id once, so a command that did go through before the
 * drop is answered from its record and never applied twice. A command still without a reply
 * when its timeoutMs runs out rejects: `disconnected` (details.sent false: it never left, so
 * it was not applied) or `timeout` (details.sent true: it may have been applied; retrying with
 * the same `requestId` tells). `time.ping`, `join`, `room.sync` and `leave` are never re-sent:
 * they fail with `disconnected` at once (re-joining is the client's own job).
 */
export class ShareTubeClient {
  /** @param {ClientOptions} options */
  constructor({
    url,
    token,
    WebSocketImpl = globalThis.WebSocket,
    now = () => Date.now(),
    random = Math.random,
    setTimeout: setTimer = (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: clearTimer = (handle) => globalThis.clearTimeout(handle),
    clockSamples = 8,
    clockResyncMs = 60_000, // clocks of NTP-synced hosts drift < 1 ms per minute
    pingTimeoutMs = 2000,
    idPrefix,
    reconnect = false,
  }) {
    this.url = url;
    this.token = token;
    /** The room the convenience commands address by default: the last one joined. */
    this.room = null;
    this._WebSocket = WebSocketImpl;
    // Called as plain functions: browsers throw "Illegal invocation" for window.setTimeout
    // called with `this` set to another object.
    this._now = () => now();
    this._random = () => random();
    this._setTimeout = (fn, ms) => setTimer(fn, ms);
    this._clearTimeout = (handle) => clearTimer(handle);
    this._clockSamples = clockSamples;
    this._clockResyncMs = clockResyncMs;
    this._pingTimeoutMs = pingTimeoutMs;

    this._idPrefix = idPrefix ?? makeIdPrefix(this._random);
    this._seq = 0;
    this._ws = null;
    this._connecting = null;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: *}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Map<string, RoomState>} */
    this._rooms = new Map();
    /** Rooms we mean to be in, with their join options; re-joined on every connect. */
    this._joined = new Map();
    /** Events that arrive while a room's snapshot is in flight, replayed on top of it. */
    this._buffers = new Map();
    this._clock = { offsetMs: 0, rttMs: Infinity, synced: false };
    this._clockRun = null;
    this._clockTimer = null;
    /** Reconnect policy, or null when the caller supervises the socket itself. */
    this._reconnect = reconnect
      ? { minMs: 500, maxMs: 15_000, stableMs: 5000, ...(reconnect === true ? {} : reconnect) }
      : null;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._wanted = false; // connect() was called and disconnect() was not
    this._openedAt = null;
    this._drainWithinMs = null; // the server is draining: reconnect within this window
  }

  // --- listeners -------------------------------------------------------------------------

  /**
   * @param {string} type
   * @param {(payload: any) => void} fn
   * @returns {() => void} unsubscribe
   */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _emit(type, payload) {
    const fns = this._listeners.get(type);
    if (!fns) return;
    for (const fn of [...fns]) {
      try {
        fn(payload);
      } catch (err) {
        // One broken listener must not stop the client or the other listeners; rethrow
        // outside our call stack so it still shows up in the console.
        queueMicrotask(() => { throw err; });
      }
    }
  }

  // --- connection ------------------------------------------------------------------------

  /** @returns {boolean} */
  get connected() {
    return this._ws !== null && this._ws.readyState === OPEN;
  }

  /**
   * Open the socket; resolves once it is open. Calling it while open or opening returns the
   * same promise. On open: clock sync starts and every joined room is re-joined.
   * @returns {Promise<void>}
   */
  connect() {
    this._wanted = true;
    this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._ws) return this._connecting;
    if (typeof this._WebSocket !== 'function') {
      return Promise.reject(new Error('ShareTubeClient: no WebSocket implementation, pass WebSocketImpl'));
    }
    const sep = this.url.includes('?') ? '&' : '?';
    const ws = new this._WebSocket(`${this.url}${sep}token=${encodeURIComponent(this.token)}`);
    this._ws = ws;
    this._connecting = new Promise((resolve, reject) => {
      ws.addEventListener('open', () => {
        resolve();
        this._onOpen(ws);
      });
      ws.addEventListener('close', (ev) => {
        reject(new ShareTubeError('disconnected', `socket closed (${ev?.code ?? 'no code'})`));
        this._onClose(ws, ev);
      });
      ws.addEventListener('message', (ev) => this._onMessage(ws, ev));
    });
    // The caller may not await connect(); a refused socket is also reported as `close`.
    this._connecting.catch(() => {});
    return this._connecting;
  }

  /**
   * Close the socket. Pending requests reject with `disconnected`; joined rooms are remembered,
   * so a later connect() re-joins them.
   * @param {number} [code]
   * @param {string} [reason]
   */
  disconnect(code = 1000, reason = 'client disconnect') {
    this._wanted = false;
    this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const ws = this._ws;
    if (!ws) {
      this._failQueued('disconnected', 'client disconnected');
      return;
    }
    this._onClose(ws, { code, reason, wasClean: true });
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this._openedAt = this._now();
    this._drainWithinMs = null;
    this._emit('open', { url: this.url });
    this.syncClock().catch((error) => this._emit('error', { source: 'clock', error }));
    const rejoins = [...this._joined].map(([room, opts]) => this._rejoin(room, opts));
    // Commands that got no reply before the drop (or were made while down) go out once the
    // rooms are joined again: a player's report needs this socket's session in the room.
    Promise.allSettled(rejoins).then(() => this._flushUnanswered(ws));
  }

  _onClose(ws, ev) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._connecting = null;
    this._clearTimeout(this._clockTimer);
    this._clockTimer = null;
    this._buffers.clear();
    const willReconnect = this._shouldReconnect(ev?.code);
    for (const [id, p] of [...this._pending]) {
      // Kept for a re-send after the reconnect (same id: applied at most once), or failed now.
      if (willReconnect && p.resend) continue;
      this._pending.delete(id);
      this._clearTimeout(p.timer);
      p.reject(new ShareTubeError('disconnected', 'socket closed while waiting for the reply', { sent: p.sent }));
    }
    this._emit('close', { code: ev?.code, reason: ev?.reason, wasClean: ev?.wasClean });
    if (willReconnect) this._scheduleReconnect(ev?.code);
  }

  // --- reconnecting ----------------------------------------------------------------------

  /** 4001: the token is refused (expired, signed out); retrying cannot help. */
  _shouldReconnect(code) {
    return this._reconnect !== null && this._wanted && code !== 4001;
  }

  _scheduleReconnect(code) {
    const r = this._reconnect;
    const stable = this._openedAt !== null && this._now() - this._openedAt >= r.stableMs;
    this._openedAt = null;
    if (stable) this._attempt = 0;
    let delayMs;
    if (this._drainWithinMs !== null) {
      // A draining server named a window: spread over it, so the other servers are not
      // hit by all of its clients at the same instant.
      delayMs = this._random() * this._drainWithinMs;
      this._drainWithinMs = null;
    } else {
      // Exponential backoff with "equal jitter": half fixed, half random.
      const base = Math.min(r.maxMs, r.minMs * 2 ** this._attempt);
      delayMs = base / 2 + this._random() * (base / 2);
    }
    this._attempt += 1;
    this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      if (this._wanted && !this._ws) this.connect().catch(() => {});
    }, delayMs);
    this._emit('reconnecting', { attempt: this._attempt, delayMs, code });
  }

  /** Send again what had no reply, oldest first, on the socket that just opened. */
  _flushUnanswered(ws) {
    if (ws !== this._ws || ws.readyState !== OPEN) return;
    for (const [id, p] of this._pending) {
      if (!p.resend || p.ws === ws) continue;
      p.ws = ws;
      p.sent = true;
      try {
        ws.send(p.text);
      } catch {
        return; // closing again; the next open sends it
      }
    }
  }

  /** Commands that never left (made while down) fail when the client stops for good. */
  _failQueued(code, message) {
    for (const [id, p] of [...this._pending]) {
      this._pending.delete(id);
      this._clearTimeout(p.timer);
      p.reject(new ShareTubeError(code, message, { sent: p.sent }));
    }
  }

  _onMessage(ws, ev) {
    if (ws !== this._ws) return;
    const frame = parseFrame(ev?.data);
    if (!frame) {
      this._emit('error', { source: 'frame', error: new ShareTubeError('bad_reply', 'unreadable frame') });
    } else if ('re' in frame) {
      if (this._openedAt !== null && this._attempt > 0 && frame.ok !== false) this._attempt = 0;
      this._onReply(frame);
    } else if (typeof frame.type === 'string') {
      this._onEvent(frame);
    }
  }

  // --- requests --------------------------------------------------------------------------

  _nextId() {
    this._seq += 1;
    return `${this._idPrefix}-${this._seq}`;
  }

  /**
   * Send a command and wait for its reply.
   * Rejects with a ShareTubeError: the server's code on an error reply, `timeout` after
   * timeoutMs, `disconnected` when the socket is not open or closes first (`details.sent`
   * says whether the frame ever left). Without `reconnect` a command is never re-sent. With
   * it, a command without a reply is sent again after the reconnect with the same request
   * id, which the server applies at most once (see the class comment). `requestId` re-uses
   * an id on purpose: retrying a command that timed out returns its first outcome.
   * @param {string} type
   * @param {object} [data]
   * @param {{room?: string, timeoutMs?: number, requestId?: string}} [options]
   * @returns {Promise<any>} the reply's data
   */
  request(type, data = {}, { room, timeoutMs = 5000, requestId } = {}) {
    const ws = this._ws;
    const open = ws !== null && ws.readyState === OPEN;
    const resend = this._reconnect !== null && !NOT_RESENT.has(type);
    if (!open && !(resend && this._wanted)) {
      return Promise.reject(new ShareTubeError('disconnected', `not connected, ${type} not sent`, { sent: false }));
    }
    const id = requestId ?? this._nextId();
    if (this._pending.has(id)) {
      return Promise.reject(new ShareTubeError('bad_request', `request id ${id} is already waiting for its reply`));
    }
    const frame = room == null ? { id, type, data } : { id, type, room, data };
    const text = JSON.stringify(frame);
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null, text, resend, sent: false, ws: null };
      entry.timer = this._setTimeout(() => {
        if (this._pending.get(id) !== entry) return;
        this._pending.delete(id);
        reject(entry.sent
          ? new ShareTubeError('timeout', `no reply to ${type} within ${timeoutMs} ms`, { sent: true })
          : new ShareTubeError('disconnected', `${type} not sent within ${timeoutMs} ms: not connected`, { sent: false }));
      }, timeoutMs);
      this._pending.set(id, entry);
      if (!open) return; // sent after the reconnect (_flushUnanswered)
      try {
        ws.send(text);
        entry.ws = ws;
        entry.sent = true;
      } catch (err) {
        if (resend) return; // the socket is closing; the next one sends it
        this._pending.delete(id);
        this._clearTimeout(entry.timer);
        reject(new ShareTubeError('disconnected', `send failed: ${err?.message ?? err}`, { sent: false }));
      }
    });
  }


  _onReply(frame) {
    const p = this._pending.get(frame.re);
    if (!p) {
      // A late reply after a timeout, or an error for a frame the server could not read.
      if (frame.ok === false) this._emit('error', { source: 'reply', error: replyError(frame) });
      return;
    }
    this._pending.delete(frame.re);
    this._clearTimeout(p.timer);
    if (frame.ok === true) p.resolve(frame.data ?? {});
    else p.reject(replyError(frame));
  }

  // --- rooms -----------------------------------------------------------------------------

  /**
   * Join a room and load its snapshot.
   * @param {string} room code
   * @param {{player?: boolean}} [options] player: this client plays the video (the extension)
   * @returns {Promise<RoomState>}
   */
  async join(room, { player = false } = {}) {
    const opts = { player };
    this._joined.set(room, opts);
    try {
      const state = await this._loadSnapshot(room, 'join', opts);
      this.room = room;
      return state;
    } catch (err) {
      if (this._joined.get(room) === opts) this._joined.delete(room);
      throw err;
    }
  }

  /**
   * Leave a room. Local state is dropped at once, whatever the reply.
   * @param {string} [room] defaults to the current room
   * @returns {Promise<any>}
   */
  leave(room = this.room) {
    if (room == null) return Promise.reject(new ShareTubeError('not_joined', 'leave: no room joined'));
    this._joined.delete(room);
    this._rooms.delete(room);
    this._buffers.delete(room);
    if (this.room === room) this.room = null;
    return this.request('leave', {}, { room });
  }

  /**
   * Fetch a fresh snapshot (`room.sync`) and replace the room's state with it.
   * Resolves null when the room is not (or no longer) joined: the store only keeps joined rooms.
   * @param {string} [room]
   * @returns {Promise<RoomState|null>}
   */
  sync(room = this.room) {
    return this._loadSnapshot(room, 'room.sync', {});
  }

  /**
   * @param {string} [room]
   * @returns {RoomState|undefined} the current state, treat as read-only
   */
  getState(room = this.room) {
    return this._rooms.get(room);
  }

  /**
   * Where the room's video should be now, on the server's clock.
   * @param {string} [room]
   * @returns {number}
   */
  expectedPositionMs(room = this.room) {
    return expectedPositionMs(this._rooms.get(room)?.playback, this.serverNow());
  }

  /**
   * Ask for a snapshot; events for the room that arrive meanwhile are held back and replayed
   * on top of it (those already in the snapshot are ignored by their version).
   */
  async _loadSnapshot(room, type, data) {
    const buffer = [];
    this._buffers.set(room, buffer);
    let snapshot;
    try {
      snapshot = await this.request(type, data, { room });
    } catch (err) {
      if (this._buffers.get(room) === buffer) {
        this._buffers.delete(room);
        for (const ev of buffer) this._applyLive(room, ev);
      }
      throw err;
    }
    // Superseded by a newer snapshot request, or the room was left meanwhile.
    if (this._buffers.get(room) !== buffer || !this._joined.has(room)) return null;
    this._buffers.delete(room);
    const state = applySnapshot(snapshot);
    this._rooms.set(room, state);
    this._emit('snapshot', { room, state, snapshot });
    this._emit('state', { room, state, cause: 'snapshot' });
    for (const ev of buffer) this._applyLive(room, ev);
    return this._rooms.get(room);
  }

  /**
   * Re-join after a reconnect; a room the server refuses now (closed, kicked) is dropped. A
   * re-join that got no answer in time is tried again (backing off) while this socket stays
   * open: the room would otherwise look joined and hear nothing. A dropped socket re-joins
   * when the next one opens.
   */
  _rejoin(room, opts, attempt = 0) {
    const ws = this._ws;
    return this._loadSnapshot(room, 'join', opts).catch((error) => {
      const current = this._joined.get(room) === opts;
      if (!CLIENT_ERROR_CODES.includes(error.code) && current) {
        this._joined.delete(room);
        this._rooms.delete(room);
        if (this.room === room) this.room = null;
      } else if (error.code === 'timeout' && current && ws === this._ws) {
        const delay = Math.min(REJOIN_RETRY_MAX_MS, REJOIN_RETRY_MS * 2 ** attempt);
        this._setTimeout(() => {
          if (ws === this._ws && this._joined.get(room) === opts) this._rejoin(room, opts, attempt + 1);
        }, delay);
      }
      this._emit('error', { source: 'join', room, error });
    });
  }

  _onEvent(frame) {
    this._emit('event', frame);
    if (frame.type === 'evicted') {
      this._onEvicted(frame);
      return;
    }
    if (frame.type === 'reconnect') {
      // The server is draining (graceful shutdown) and closes this socket next; reconnect
      // within the window it names (with `reconnect` on), to whichever server answers.
      const within = frame.data?.within_ms;
      this._drainWithinMs = Number.isFinite(within) && within >= 0 ? Math.min(within, 60_000) : 0;
      return;
    }
    if (frame.type === 'resync') {
      // Events were lost that no gap shows: the gateway's bus reconnected, or (a room
      // event, with `v`) a service committed them and died before publishing them.
      if (this._rooms.has(frame.room)) this._resync(frame.room);
      return;
    }
    const room = frame.room;
    const buffer = this._buffers.get(room);
    if (buffer) {
      // Bounded: past this the snapshot is far behind anyway and gap detection resyncs.
      if (buffer.length < 1000) buffer.push(frame);
      return;
    }
    if (this._rooms.has(room)) this._applyLive(room, frame);
  }

  /**
   * `{"type": "evicted", "room", "data": {"reason": "kicked" | "banned" | "closed"}}` (no
   * `v`): the server took this socket out of the room. Forget it, so a reconnect does not
   * re-join; a kicked user may join again by calling join(), a closed room is gone.
   */
  _onEvicted(frame) {
    const room = frame.room;
    if (!this._joined.has(room) && !this._rooms.has(room)) return;
    this._joined.delete(room);
    this._rooms.delete(room);
    this._buffers.delete(room);
    if (this.room === room) this.room = null;
    this._emit('evicted', { room, reason: frame.data?.reason ?? 'kicked' });
  }

  _applyLive(room, frame) {
    const before = this._rooms.get(room);
    if (!before) return;
    const { state, applied, gap } = applyEvent(before, frame);
    if (state !== before) this._rooms.set(room, state);
    if (applied) {
      this._emit(frame.type, { room, v: frame.v, data: frame.data, state });
      this._emit('state', { room, state, cause: frame.type });
    }
    if (gap) {
      this._emit('gap', { room, v: frame.v, lastEventV: before.lastEventV });
      this._resync(room);
    }
  }

  _resync(room) {
    if (this._buffers.has(room)) return; // a snapshot is already on its way
    this.sync(room).catch((error) => this._emit('error', { source: 'sync', room, error }));
  }

  // --- commands --------------------------------------------------------------------------

  _command(type, data, { room = this.room, timeoutMs } = {}) {
    if (room == null) return Promise.reject(new ShareTubeError('not_joined', `${type}: no room joined`));
    return this.request(type, data, { room, timeoutMs });
  }

  /**
   * `room.create`; reply data `{room: {code, ...}}`.
   * @param {{name?: string, visibility?: string, control_mode?: string}} [data]
   */
  createRoom(data = {}) {
    return this.request('room.create', data);
  }

  /** @param {{room?: string, timeoutMs?: number}} [options] */
  play(options) { return this._command('play', {}, options); }

  /** @param {{room?: string, timeoutMs?: number}} [options] */
  pause(options) { return this._command('pause', {}, options); }

  /**
   * @param {number} positionMs
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  seek(positionMs, options) {
    return this._command('seek', { position_ms: Math.max(0, Math.round(positionMs)) }, options);
  }

  /** @param {{room?: string, timeoutMs?: number}} [options] */
  skip(options) { return this._command('skip', {}, options); }

  /** @param {{room?: string, timeoutMs?: number}} [options] */
  restart(options) { return this._command('restart', {}, options); }

  /**
   * Tell the room this player has loaded the current entry.
   * @param {string} entryId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  ready(entryId, options) { return this._command('ready', { entry_id: entryId }, options); }

  /**
   * @param {string | {video_id?: string, url?: string, title?: string, duration_ms?: number, thumbnail?: string}} item
   *   a video id, a YouTube URL, or the wire object itself
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  queueAdd(item, options) {
    const data = typeof item === 'string'
      ? (/^https?:\/\//i.test(item) ? { url: item } : { video_id: item })
      : { ...item };
    return this._command('queue.add', data, options);
  }

  /**
   * Take an entry off the queue (one's own; others' need the room's control mode).
   * @param {string} entryId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  queueRemove(entryId, options) { return this._command('queue.remove', { entry_id: entryId }, options); }

  /**
   * Move an entry to `index` in the queue (0 = plays next); a control command.
   * @param {string} entryId
   * @param {number} index
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  queueMove(entryId, index, options) {
    return this._command('queue.move', { entry_id: entryId, index: Math.max(0, Math.round(index)) }, options);
  }

  /**
   * @param {string} text
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  chatSend(text, options) { return this._command('chat.send', { text }, options); }

  /**
   * Older messages, newest first: `{messages, has_more, versions: {chat}}`.
   * @param {{before_id?: string, limit?: number}} [page]  limit 1-100, default 50
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  chatHistory(page = {}, options) { return this._command('chat.history', { ...page }, options); }

  /**
   * Remove a message (owners and operators); every client drops it on the `chat` event.
   * @param {string} messageId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  chatDelete(messageId, options) { return this._command('chat.delete', { message_id: messageId }, options); }

  // --- room policy, roles and moderation -------------------------------------------------

  /**
   * `room.settings` (owner): any of name, visibility, control_mode, ad_sync, auto_advance,
   * vote_skip_ratio (0-1], queue_limit_per_user (0 = no cap). Reply `{settings}`.
   * @param {object} changes
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  updateSettings(changes, options) { return this._command('room.settings', { ...changes }, options); }

  /**
   * Grant (`operator`) or revoke (`member`) a member's operator role (owner).
   * @param {string} userId
   * @param {"operator" | "member"} role
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  setRole(userId, role, options) { return this._command('room.role', { user_id: userId, role }, options); }

  /**
   * Hand the room to another member (owner); the former owner stays on as an operator.
   * @param {string} userId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  transferOwnership(userId, options) { return this._command('room.transfer', { user_id: userId }, options); }

  /**
   * Remove a member now (owner, operators); they may join again.
   * @param {string} userId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  kick(userId, options) { return this._command('room.kick', { user_id: userId }, options); }

  /**
   * Ban a user (owner, operators): removed now, refused on join until unbanned.
   * @param {string} userId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  ban(userId, options) { return this._command('room.ban', { user_id: userId, banned: true }, options); }

  /**
   * @param {string} userId
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  unban(userId, options) { return this._command('room.ban', { user_id: userId, banned: false }, options); }

  /**
   * Who did what in the room, newest first (owner, admins): `{entries: [{id, at_ms, action,
   * user_id, name, target_id, detail}]}`.
   * @param {{limit?: number, before_id?: number}} [page]  limit 1-200, default 50
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  roomAudit(page = {}, options) { return this._command('room.audit', { ...page }, options); }

  /**
   * Set everyone's playback rate (a control command); every client applies `playback.rate`.
   * @param {number} rate 0.25-2
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  setRate(rate, options) { return this._command('rate', { rate }, options); }

  /**
   * Vote to skip the current entry; reply `{entry_id, votes, needed, skipped}`.
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  voteSkip(options) { return this._command('skip.vote', {}, options); }

  /** @param {{room?: string, timeoutMs?: number}} [options] */
  queueShuffle(options) { return this._command('queue.shuffle', {}, options); }

  /**
   * queueAdd at the head of the queue ("play next").
   * @param {string | object} item  as for queueAdd
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  queueAddNext(item, options) {
    const data = typeof item === 'string'
      ? (/^https?:\/\//i.test(item) ? { url: item } : { video_id: item })
      : { ...item };
    return this._command('queue.add', { ...data, next: true }, options);
  }

  /**
   * This player started showing an ad (players only; the room's ad_sync policy decides
   * whether the room waits). Reply `{counted}`. After `adEnd`, a room in `starting` needs
   * this player's `ready` again.
   * @param {string} [entryId] the entry the player had loaded
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  adStart(entryId, options) { return this._command('ad.start', entryId ? { entry_id: entryId } : {}, options); }

  /**
   * @param {string} [entryId]
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  adEnd(entryId, options) { return this._command('ad.end', entryId ? { entry_id: entryId } : {}, options); }

  // --- site admins -----------------------------------------------------------------------

  /**
   * `admin.rooms` (tokens with the `adm` claim; others get `forbidden`): every room with
   * someone online, public or private, busiest first, and the newest audit entries of all
   * rooms: `{rooms: [{code, name, visibility, control_mode, owner_id, created_at_ms, members,
   * members_online, now_playing, queue_length}], audit: [{id, room, at_ms, action, ...}]}`.
   * @param {{limit?: number, audit_limit?: number}} [query]
   * @param {{timeoutMs?: number}} [options]
   */
  adminRooms(query = {}, { timeoutMs } = {}) { return this.request('admin.rooms', { ...query }, { timeoutMs }); }

  /**
   * `room.close`: end a room for everyone (its owner, or an admin for any room; others get
   * `forbidden`). Reply `{}`; every socket in the room, the caller's too, then gets
   * `evicted` with reason `closed`, and the room answers `not_found` from then on.
   * @param {{room?: string, timeoutMs?: number}} [options]
   */
  closeRoom(options) { return this._command('room.close', {}, options); }

  // --- clock -----------------------------------------------------------------------------

  /**
   * Estimate the offset to server time from `samples` sequential `time.ping`s, keeping the
   * sample with the smallest round trip. Concurrent calls share one run. Schedules the next
   * run after clockResyncMs.
   * @param {{samples?: number}} [options]
   * @returns {Promise<{offsetMs: number, rttMs: number, samples: number}>}
   */
  syncClock({ samples = this._clockSamples } = {}) {
    if (!this._clockRun) {
      this._clockRun = this._sampleClock(samples).finally(() => {
        this._clockRun = null;
        this._scheduleClockSync();
      });
    }
    return this._clockRun;
  }

  async _sampleClock(count) {
    const samples = [];
    let lastError = null;
    // Sequential, never parallel: pings queued behind each other would inflate every RTT.
    for (let i = 0; i < count; i++) {
      const t0 = this._now();
      try {
        const reply = await this.request('time.ping', { t0 }, { timeoutMs: this._pingTimeoutMs });
        const t1 = this._now();
        if (!Number.isFinite(reply?.server_ms)) throw new ShareTubeError('bad_reply', 'time.ping reply without server_ms');
        samples.push(clockSample({ t0, t1, serverMs: reply.server_ms }));
      } catch (err) {
        lastError = err;
        if (err.code === 'disconnected') break;
      }
    }
    const best = pickBestSample(samples);
    if (!best) throw lastError ?? new ShareTubeError('timeout', 'no clock sample');
    this._clock = { offsetMs: best.offsetMs, rttMs: best.rttMs, synced: true };
    const result = { offsetMs: best.offsetMs, rttMs: best.rttMs, samples: samples.length };
    this._emit('clock', result);
    return result;
  }

  _scheduleClockSync() {
    this._clearTimeout(this._clockTimer);
    this._clockTimer = null;
    if (!this.connected || !(this._clockResyncMs > 0)) return;
    this._clockTimer = this._setTimeout(() => {
      this._clockTimer = null;
      this.syncClock().catch((error) => this._emit('error', { source: 'clock', error }));
    }, this._clockResyncMs);
  }

  /**
   * Report this player's measured drift from the room's expected position (player minus
   * expected, ms) and its current playbackRate. The gateway answers it itself and exports
   * it as a histogram (sharetube_gateway_sync_drift_seconds); nothing is stored. Bounded as
   * the gateway bounds it: ±10 minutes, rate 1/16..16.
   * @param {number} driftMs
   * @param {number} [rate]
   * @param {{timeoutMs?: number}} [options]
   */
  reportDrift(driftMs, rate, { timeoutMs = 5000 } = {}) {
    if (!Number.isFinite(driftMs)) return Promise.reject(new ShareTubeError('bad_request', 'driftMs must be a finite number'));
    const data = { drift_ms: Math.max(-600000, Math.min(600000, driftMs)) };
    if (Number.isFinite(rate)) data.rate = Math.max(0.0625, Math.min(16, rate));
    return this.request('drift.report', data, { timeoutMs });
  }

  /** @returns {number} the server's wall clock in ms, as estimated (client clock before a sync) */
  serverNow() {
    return this._now() + this._clock.offsetMs;
  }

  /** @returns {{offsetMs: number, rttMs: number, synced: boolean}} */
  get clock() {
    return { ...this._clock };
  }
}

function replyError(frame) {
  const { code = 'internal', message = 'request failed', ...details } = frame.error ?? {};
  return new ShareTubeError(code, message, Object.keys(details).length ? details : undefined);
}
