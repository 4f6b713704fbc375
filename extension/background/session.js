/**
 * The extension's one connection to ShareTube, owned by the service worker.
 *
 * It holds the protocol client (the socket, the room's state store, the server clock), keeps
 * the socket up (reconnect with backoff; keep-alive pings so Chrome does not stop the worker
 * while a room is open) and tells every attached tab and popup what changed. Everything it
 * must not forget lives in chrome.storage (./storage.js): Chrome stops an idle service worker
 * after 30 s and may stop it at any time, and a new worker picks up from storage as if nothing
 * had happened (boot → connect → join the stored room).
 */

import {
  CLIENT_ERROR_CODES, ShareTubeClient, ShareTubeError, evictionMessage,
} from '../lib/sharetube-client.js';
import { CONN, PORT, PUSH, ROOM_CODE_RE, canControl, socketUrl } from '../shared/messages.js';
import * as auth from './auth.js';
import { Reports } from './reports.js';
import * as storage from './storage.js';

// Backoff between reconnects: fast for a blip, at most 15 s so a restarted server is found soon.
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15_000;
// Chrome stops a service worker idle for 30 s; since Chrome 116 socket traffic resets that
// timer, so a ping every 20 s keeps the worker (and the room) alive while joined.
const KEEPALIVE_MS = 20_000;
// A player tab that reloads detaches and re-attaches within a second or two: keep playing
// for the room that long before joining as a non-player (which stops rooms waiting for us).
const PLAYER_GRACE_MS = 10_000;
// How long a request waits for the socket and the room after a (re)start of the worker.
const READY_WAIT_MS = 8_000;

const error = (code, message) => new ShareTubeError(code, message);

export class Session {
  constructor() {
    /** @type {import('./storage.js').Config|null} */
    this.config = null;
    /** @type {ShareTubeClient|null} */
    this.client = null;
    this.connection = CONN.SIGNED_OUT;
    this.lastError = null;
    this.starts = 0;
    /** @type {Map<chrome.runtime.Port, {tabId: number|undefined, watch: boolean, at: number}>} */
    this.tabs = new Map();
    this.popups = new Set();
    this.playerPort = null;
    this.joinedAsPlayer = null;
    this.reports = new Reports(
      (type, data) => this.command(type, data),
      () => this.client?.getState(this.config?.room)?.playback?.entry_id ?? null,
    );
    this._retry = 0;
    this._retryTimer = null;
    this._keepalive = null;
    this._graceTimer = null;
    this._waiters = new Set();
    this.loaded = this._boot();
  }

  async _boot() {
    this.config = await storage.load();
    this.starts = await storage.countStart();
    if (this.config.auth) this._connect();
    this._pushStatus();
  }

  // --- status ---------------------------------------------------------------------------

  status() {
    const cfg = this.config ?? {};
    return {
      connection: this.connection,
      serverUrl: cfg.serverUrl,
      user: cfg.auth?.user ?? null,
      room: cfg.room ?? null,
      joined: Boolean(cfg.room && this.client?.getState(cfg.room)),
      player: this.joinedAsPlayer,
      recentRooms: cfg.recentRooms ?? [],
      error: this.lastError,
      starts: this.starts,
      reports: this.reports.status(),
      clock: this.client?.clock ?? null,
    };
  }

  _setConnection(connection) {
    this.connection = connection;
    this._pushStatus();
  }

  _fail(err) {
    this.lastError = err ? { code: err.code ?? 'internal', message: err.message } : null;
    this._pushStatus();
  }

  _pushStatus() {
    const msg = { type: PUSH.STATUS, status: this.status() };
    for (const port of [...this.tabs.keys(), ...this.popups]) safePost(port, msg);
    this._wake();
  }

  _pushState(cause) {
    const room = this.config?.room;
    const state = room ? this.client?.getState(room) : null;
    for (const port of this.tabs.keys()) safePost(port, this._stateMessage(port, state, cause));
    this._wake();
  }

  _stateMessage(port, state, cause) {
    const user = this.config?.auth?.user ?? null;
    return {
      type: PUSH.STATE,
      cause,
      room: this.config?.room ?? null,
      state: state ?? null,
      clock: this.client?.clock ?? null,
      me: user,
      canControl: canControl(state, user?.id),
      player: port === this.playerPort,
      serverUrl: this.config?.serverUrl,
      connection: this.connection,
    };
  }

  // --- the socket -----------------------------------------------------------------------

  _connect() {
    this._teardown();
    const { serverUrl, auth: signedIn } = this.config;
    const client = new ShareTubeClient({ url: socketUrl(serverUrl), token: signedIn.token });
    this.client = client;
    this.reports.reset();
    let opened = false;
    client.on('open', () => {
      if (this.client !== client) return;
      opened = true;
      this._retry = 0;
      this.reports.reset();
      this._setConnection(CONN.OPEN);
      // The client re-joins the rooms it joined itself; a fresh client (a new worker) has
      // none, so the stored room is joined here.
      const room = this.config.room;
      if (room && !client.getState(room) && !this._joining) this._join(room).catch(() => {});
    });
    client.on('close', ({ code }) => {
      if (this.client !== client) return;
      this._setConnection(CONN.CLOSED);
      if (code === 4001) {
        this._signedOut('The server refused the sign-in; sign in again.');
        return;
      }
      this._scheduleReconnect(opened);
      opened = false;
    });
    client.on('state', ({ room, cause }) => {
      if (room === this.config.room) this._pushState(cause);
    });
    client.on('clock', () => this._pushState('clock'));
    client.on('evicted', ({ room, reason }) => {
      if (room !== this.config.room) return;
      this._leftRoom({ code: 'evicted', message: evictionMessage(room, reason) });
    });
    client.on('error', ({ source, room, error: err }) => {
      // A re-join the server refuses (room closed, kicked): we are no longer in it.
      if (source === 'join' && room === this.config.room && !CLIENT_ERROR_CODES.includes(err.code)) {
        this._leftRoom(err);
      }
    });
    this._setConnection(CONN.CONNECTING);
    client.connect().catch(() => {}); // a failure is reported as `close` too
    this._keepalive = setInterval(() => {
      if (client.connected && this.config.room) {
        client.request('time.ping', { t0: Date.now() }).catch(() => {});
      }
    }, KEEPALIVE_MS);
  }

  _teardown() {
    clearTimeout(this._retryTimer);
    clearInterval(this._keepalive);
    this._retryTimer = null;
    this._keepalive = null;
    const old = this.client;
    this.client = null;
    this.joinedAsPlayer = null;
    if (old) old.disconnect(1000, 'extension reconnects');
  }

  async _scheduleReconnect(wasOpen) {
    const client = this.client;
    if (!wasOpen && this._retry >= 1) {
      // Refused before it opened, again: a dead token gets HTTP 403 on the upgrade, which a
      // browser reports as a bare 1006. Ask /auth/me before trying forever.
      try {
        await auth.whoAmI(this.config.serverUrl, this.config.auth.token);
      } catch (err) {
        if (err.code === 'unauthorized' || err.code === 'http_401') {
          this._signedOut('Your sign-in is no longer valid; sign in again.');
          return;
        }
      }
    }
    if (this.client !== client) return;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this._retry);
    this._retry += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this.client !== client) return;
      this._setConnection(CONN.CONNECTING);
      client.connect().catch(() => {});
    }, base * (0.75 + Math.random() / 2)); // jitter: a restarted server is not hit by all at once
  }

  _signedOut(message) {
    this._teardown();
    this.config.auth = null;
    this.config.room = null;
    storage.save({ auth: null, room: null });
    this.lastError = message ? { code: 'unauthorized', message } : null;
    this._setConnection(CONN.SIGNED_OUT);
    this._pushState('signed_out');
  }

  /** Resolve once the socket is open and (when `needRoom`) the room's snapshot is in. */
  async whenReady(needRoom = true, timeoutMs = READY_WAIT_MS) {
    await this.loaded;
    const ok = () => {
      if (!this.client?.connected) return false;
      return !needRoom || Boolean(this.config.room && this.client.getState(this.config.room));
    };
    if (ok()) return;
    if (!this.config.auth) throw error('unauthorized', 'Sign in first.');
    if (needRoom && !this.config.room) throw error('not_joined', 'Join a room first.');
    await new Promise((resolve, reject) => {
      const waiter = () => {
        if (!ok()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(error('disconnected', 'Not connected to the ShareTube server.'));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this._waiters.delete(waiter);
      };
      this._waiters.add(waiter);
    });
  }

  _wake() {
    for (const waiter of [...this._waiters]) waiter();
  }

  // --- sign-in and settings ---------------------------------------------------------------

  async setServer(url) {
    await this.loaded;
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      throw error('bad_request', 'Not a URL.');
    }
    if (!['http:', 'https:'].includes(parsed.protocol)) throw error('bad_request', 'Use http:// or https://.');
    const serverUrl = parsed.origin + parsed.pathname.replace(/\/+$/, '');
    if (serverUrl === this.config.serverUrl) return this.status();
    // A token belongs to the server that issued it.
    this._teardown();
    this.config = { ...this.config, serverUrl, auth: null, room: null };
    await storage.save({ serverUrl, auth: null, room: null });
    this.lastError = null;
    this._setConnection(CONN.SIGNED_OUT);
    this._pushState('server');
    return this.status();
  }

  async signIn(kind, name) {
    await this.loaded;
    let signed;
    try {
      if (kind === 'google') {
        signed = await auth.googleSignIn(this.config.serverUrl);
      } else {
        const clean = String(name ?? '').trim();
        if (!clean) throw error('bad_request', 'Type a name first.');
        signed = await auth.guestSignIn(this.config.serverUrl, clean);
      }
    } catch (err) {
      this._fail(err);
      throw err;
    }
    this.config.auth = signed;
    this.config.room = null;
    await storage.save({ auth: signed, room: null });
    this.lastError = null;
    this._connect();
    return this.status();
  }

  async signOut() {
    await this.loaded;
    const signed = this.config.auth;
    if (this.config.room && this.client?.connected) {
      await this.client.leave(this.config.room).catch(() => {});
    }
    this._signedOut(null);
    if (signed) await auth.signOut(this.config.serverUrl, signed.token);
    return this.status();
  }

  // --- rooms ------------------------------------------------------------------------------

  async createRoom({ name, control_mode: controlMode } = {}) {
    await this.whenReady(false);
    const data = {};
    if (name) data.name = String(name).slice(0, 80);
    if (controlMode) data.control_mode = controlMode;
    const created = await this.client.createRoom(data);
    return this.joinRoom(created.room.code);
  }

  async joinRoom(code) {
    const clean = String(code ?? '').trim();
    if (!ROOM_CODE_RE.test(clean)) throw error('bad_request', 'A room code is 4 to 16 letters and digits.');
    await this.whenReady(false);
    const previous = this.config.room;
    if (previous && previous !== clean) await this.client.leave(previous).catch(() => {});
    await this._join(clean);
    return this.status();
  }

  async _join(code) {
    this._joining = true;
    try {
      const player = this._wantPlayer();
      const state = await this.client.join(code, { player });
      this.joinedAsPlayer = player;
      this.config.room = code;
      this.config.recentRooms = storage.withRecent(this.config.recentRooms, {
        code,
        name: state?.settings?.name,
      });
      await storage.save({ room: code, recentRooms: this.config.recentRooms });
      this.lastError = null;
      this._pushStatus();
      this._pushState('join');
      // A player tab attached (or left) while this join was on its way.
      if (player !== this._wantPlayer()) queueMicrotask(() => this._updatePlayer());
    } catch (err) {
      if (!CLIENT_ERROR_CODES.includes(err.code)) this._leftRoom(err);
      else this._fail(err);
      throw err;
    } finally {
      this._joining = false;
    }
  }

  _leftRoom(err) {
    this.config.room = null;
    this.joinedAsPlayer = null;
    storage.save({ room: null });
    this._fail(err);
    this._pushState('left');
  }

  async leaveRoom() {
    await this.loaded;
    const room = this.config.room;
    if (room && this.client?.connected) await this.client.leave(room).catch(() => {});
    this._leftRoom(null);
    return this.status();
  }

  /** A command for the current room, e.g. `play`, `seek` {position_ms}, `queue.move`. */
  async command(type, data = {}) {
    await this.whenReady(true);
    return this.client.request(type, data, { room: this.config.room });
  }

  // --- tabs and popups --------------------------------------------------------------------

  attach(port) {
    if (port.name === PORT.POPUP) {
      this.popups.add(port);
      port.onDisconnect.addListener(() => this.popups.delete(port));
      this.loaded.then(() => safePost(port, { type: PUSH.STATUS, status: this.status() }));
      return;
    }
    if (port.name !== PORT.TAB) return;
    this.tabs.set(port, { tabId: port.sender?.tab?.id, watch: false, at: Date.now() });
    port.onMessage.addListener((msg) => {
      if (msg?.type !== 'hello') return;
      const info = this.tabs.get(port);
      if (!info) return;
      info.watch = Boolean(msg.watch);
      if (info.watch) this._electPlayer(port);
      else if (this.playerPort === port) this._electPlayer(this._latestWatchTab());
      this.loaded.then(() => {
        safePost(port, { type: PUSH.STATUS, status: this.status() });
        safePost(port, this._stateMessage(port, this.client?.getState(this.config.room), 'attach'));
      });
    });
    port.onDisconnect.addListener(() => {
      this.tabs.delete(port);
      if (this.playerPort === port) this._electPlayer(this._latestWatchTab());
    });
  }

  /** The most recently attached watch tab, or null. */
  _latestWatchTab() {
    const watching = [...this.tabs.entries()].filter(([, i]) => i.watch).sort((a, b) => b[1].at - a[1].at);
    return watching.length ? watching[0][0] : null;
  }

  /** One tab drives the video for this user: the watch tab attached last. */
  _electPlayer(port) {
    if (this.playerPort === port) return;
    this.playerPort = port;
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (port) this._updatePlayer();
    else this._graceTimer = setTimeout(() => this._updatePlayer(), PLAYER_GRACE_MS);
    this._pushState('player');
  }

  _wantPlayer() {
    return this.playerPort !== null || this._graceTimer !== null;
  }

  /** Join again when we became (or stopped being) a player, so rooms waits for us or not. */
  _updatePlayer() {
    this._graceTimer = null;
    const room = this.config?.room;
    const want = this._wantPlayer();
    if (!room || !this.client?.connected || this.joinedAsPlayer === null || this.joinedAsPlayer === want) return;
    if (this._joining) return;
    this._join(room).catch(() => {});
  }
}

function safePost(port, msg) {
  try {
    port.postMessage(msg);
  } catch {
    // the port closed between the check and the post; its onDisconnect cleans up
  }
}
