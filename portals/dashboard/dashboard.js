/**
 * The admin dashboard (/dashboard): site admins only (the token's `adm` claim, given to the
 * Google accounts in ADMIN_EMAILS). The page refuses anyone else, and so does the server:
 * `admin.rooms` answers `forbidden` to a non-admin whatever this page does.
 *
 * Live over the one socket: `admin.rooms` every REFRESH_MS (rooms with someone online, their
 * members, state and queue length, and the newest audit entries of every room); the system's
 * figures from GET /api/stats beside it. Admin actions are ordinary room commands, which the
 * rooms service allows admins in any room: `room.kick`, `room.close`. After one succeeds the
 * row changes at once (the member or the room goes) and the overview is fetched again right
 * away, not at the next tick; so it is when the tab comes back into view or the socket
 * reconnects.
 */
import { $, describe, fill, h, say, timeOfDay } from '/static/common/dom.js';
import {
  claimsOf, currentUser, liveClient, signInForm, signOut, storedToken, takeSignInResult,
} from '/static/common/session.js';

const ui = {
  message: $('#message'),
  status: $('#status'),
  account: $('#account'),
  grafana: $('#grafana'),
  gate: $('#gate'),
  console: $('#console'),
  updated: $('#updated'),
  rooms: $('#rooms'),
  roomsCount: $('#rooms-count'),
  gateways: $('#gateways'),
  services: $('#services'),
  audit: $('#audit'),
};

// Fresh enough to watch a room appear as someone makes it, cheap for the servers: one
// indexed query set in rooms and one in queue per refresh per open dashboard.
const REFRESH_MS = 2000;
const CONFIRM_MS = 5000; // a second click within this confirms a kick or a close
const STATUS_TEXT = {
  connecting: ['Connecting…', 'neutral'],
  open: ['Live', 'ok'],
  reconnecting: ['Reconnecting…', 'bad'],
  signed_out: ['Signed out', 'neutral'],
};

let live = null;
let timer = null;
let user = null;
let canClose = true; // until the server says it has no `room.close`
const armed = new Map(); // action key -> time it stops waiting for its confirmation

const fail = (error) => say(ui.message, describe(error), 'bad');

// --- who may see this page --------------------------------------------------------------

async function start() {
  const failed = takeSignInResult();
  if (failed) say(ui.message, failed.message, 'bad');
  loadConfig();
  try {
    user = await currentUser();
  } catch (error) {
    fail(error);
  }
  showAccount();
  if (!user) return gate('signin');
  if (!claimsOf(storedToken())?.adm) return gate('refused');
  return openConsole();
}

function showAccount() {
  if (!user) {
    ui.account.replaceChildren();
    return;
  }
  const out = h('button', {
    type: 'button',
    class: 'link-button',
    onclick: async () => {
      live?.stop();
      await signOut();
      location.reload();
    },
  }, 'Sign out');
  fill(ui.account, `${user.name} `, out);
}

/** The page for someone who may not see the dashboard: sign in, or a refusal. */
function gate(why) {
  clearInterval(timer);
  live?.stop();
  ui.console.hidden = true;
  ui.status.hidden = true;
  ui.grafana.hidden = true;
  ui.gate.hidden = false;
  if (why === 'signin') {
    signInForm(ui.gate, {
      guest: false,
      prompt: 'Admins only: sign in with Google',
      onSignedIn: () => location.reload(),
      onError: fail,
    });
    return;
  }
  fill(ui.gate,
    h('h2', { id: 'gate-title' }, 'This dashboard is for ShareTube admins'),
    h('p', { 'data-refused': '' },
      `You are signed in as ${user?.name ?? 'someone'}, who is not an admin. `,
      'Admins are the Google accounts the server lists in ADMIN_EMAILS.'),
    h('p', {},
      h('button', {
        type: 'button',
        onclick: async () => {
          await signOut();
          location.reload();
        },
      }, 'Sign in with another account'),
      ' ',
      h('a', { href: '/' }, 'Back to the homepage')));
}

async function loadConfig() {
  try {
    const config = await (await fetch('/api/config')).json();
    if (config.grafana_url) ui.grafana.href = config.grafana_url;
  } catch {
    // no link, then
  }
}

// --- live console -------------------------------------------------------------------------

function openConsole() {
  ui.gate.hidden = true;
  ui.status.hidden = false;
  live = liveClient(storedToken(), {
    onStatus: (status) => {
      const [text, kind] = STATUS_TEXT[status] ?? [status, 'neutral'];
      ui.status.textContent = text;
      ui.status.className = `pill ${kind}`;
      if (status === 'open') refresh();
      if (status === 'signed_out') location.reload();
    },
  });
  timer = setInterval(() => {
    if (document.visibilityState === 'visible') refresh();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') refresh();
  });
}

let refreshing = false;
let refreshAgain = false; // asked for while one was under way
let actionsDone = 0; // an overview asked for before the latest action is stale: not shown

async function refresh() {
  if (!live?.client.connected) return;
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  refreshAgain = false;
  const asked = actionsDone;
  try {
    const [overview, stats] = await Promise.all([
      live.client.adminRooms({ limit: 100, audit_limit: 30 }),
      fetch('/api/stats').then((r) => (r.ok ? r.json() : null)).catch(() => null),
    ]);
    if (asked !== actionsDone) {
      refreshAgain = true; // it may still show a room just closed: ask again
      return;
    }
    ui.console.hidden = false;
    ui.grafana.hidden = ui.grafana.getAttribute('href') === '#';
    keepFocus(() => {
      renderRooms(overview.rooms);
      renderAudit(overview.audit, overview.rooms);
      if (stats) renderStats(stats, overview.rooms);
    });
    ui.updated.textContent = `· updated ${timeOfDay(Date.now())}`;
  } catch (error) {
    if (error.code === 'forbidden' || error.code === 'unauthorized') gate('refused');
    else if (error.code !== 'disconnected') fail(error);
  } finally {
    refreshing = false;
    if (refreshAgain) refresh();
  }
}

/** Re-rendering replaces the buttons: give focus back to the one that had it. */
function keepFocus(render) {
  const key = document.activeElement?.dataset?.key;
  render();
  if (key) ui.console.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

function setFigure(name, value) {
  const dd = ui.console.querySelector(`[data-figure="${name}"]`);
  if (dd) dd.textContent = value;
}

function renderStats(stats, rooms) {
  setFigure('rooms', String(stats.rooms ?? rooms.length));
  setFigure('users_online', String(stats.users_online ?? 0));
  setFigure('connections', String(stats.connections ?? 0));
  setFigure('messages_per_s', (stats.messages_per_s ?? 0).toFixed(1));
  setFigure('events_per_s', (stats.events_per_s ?? 0).toFixed(1));
  const gateways = Object.entries(stats.gateways ?? {});
  fill(ui.gateways, gateways.length
    ? gateways.map(([name, g]) => h('tr', {},
      h('td', { class: 'mono' }, name),
      h('td', { class: 'num' }, String(g.connections ?? 0)),
      h('td', { class: 'num' }, String(g.rooms ?? 0)),
      h('td', { class: 'num' }, (g.messages_per_s ?? 0).toFixed(1))))
    : h('tr', {}, h('td', { colspan: '4', class: 'muted' }, 'No gateway answered.')));
  const services = Object.entries(stats.services ?? {}).filter(([name]) => name !== 'gateway');
  fill(ui.services, services.map(([name, s]) => h('tr', {},
    h('td', {}, name),
    h('td', { class: 'num' }, String(s.replicas ?? 0)),
    h('td', { class: 'num' }, (s.messages_per_s ?? 0).toFixed(1)))));
}

const presence = (m) => (m.online ? '' : m.away ? ' (away)' : ' (offline)');

function statusText(room) {
  const playing = room.now_playing ?? {};
  const what = playing.title || playing.video_id;
  return what ? `${playing.status}: ${what}` : playing.status;
}

function renderRooms(rooms) {
  lastRooms = rooms;
  ui.roomsCount.textContent = `(${rooms.length})`;
  if (!rooms.length) {
    fill(ui.rooms, h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No room has anyone online.')));
    return;
  }
  fill(ui.rooms, rooms.map((room) => h('tr', { dataset: { roomCode: room.code } },
    h('td', { 'data-label': 'Room' },
      h('div', { class: 'name' }, room.name || room.code),
      h('div', { class: 'small muted' },
        h('span', { class: 'mono' }, room.code), ` · ${room.visibility} · ${room.control_mode.replace('_', ' ')}`)),
    h('td', { 'data-label': 'State', 'data-state': room.now_playing?.status ?? 'idle' }, statusText(room)),
    h('td', { 'data-label': 'Members' },
      h('div', { class: 'small' }, `${room.members_online} online`),
      h('ul', { class: 'members' }, room.members.map((m) => h('li', {},
        h('span', {}, m.name || m.user_id, presence(m)),
        m.role !== 'member' && h('span', { class: 'pill neutral' }, m.role),
        // Never the owner (they must hand the room over first; the server says so too).
        m.user_id !== user?.id && m.role !== 'owner' && confirmButton(
          `kick:${room.code}:${m.user_id}`,
          `Kick ${m.name} from ${room.name || room.code}`,
          'Kick',
          () => live.client.kick(m.user_id, { room: room.code }),
          `${m.name} was removed from ${room.code}.`,
          () => withoutMember(room.code, m.user_id),
        ))))),
    h('td', { 'data-label': 'Queue', class: 'num', 'data-queue-length': room.queue_length ?? '' },
      room.queue_length == null ? '?' : String(room.queue_length)),
    h('td', { class: 'actions' },
      canClose && confirmButton(
        `close:${room.code}`,
        `Close room ${room.name || room.code}`,
        'Close room',
        () => live.client.closeRoom({ room: room.code }),
        `Room ${room.name || room.code} (${room.code}) was closed; its members were told.`,
        () => lastRooms.filter((r) => r.code !== room.code),
      )))));
}

/** The rooms as shown, less one member of one room (kicked: they are out of it now). */
function withoutMember(code, userId) {
  return lastRooms.map((r) => {
    if (r.code !== code) return r;
    const members = r.members.filter((m) => m.user_id !== userId);
    return { ...r, members, members_online: members.filter((m) => m.online).length };
  });
}

/**
 * A destructive action in two clicks: the first arms it (the label asks to confirm), a second
 * within CONFIRM_MS runs it. The armed state survives the periodic re-render by its key. Once
 * the server has said yes, `after()` gives the rooms as they are now, shown at once.
 */
function confirmButton(key, label, text, action, done, after) {
  const isArmed = (armed.get(key) ?? 0) > Date.now();
  return h('button', {
    type: 'button',
    class: 'danger',
    'aria-label': isArmed ? `Confirm: ${label}` : label,
    dataset: { key },
    onclick: async () => {
      if (!((armed.get(key) ?? 0) > Date.now())) {
        armed.set(key, Date.now() + CONFIRM_MS);
        keepFocus(() => refreshRowsOnly());
        return;
      }
      armed.delete(key);
      try {
        await action();
        actionsDone += 1;
        say(ui.message, done, 'ok');
        keepFocus(() => renderRooms(after()));
      } catch (error) {
        if (error.code === 'unknown_type' && key.startsWith('close:')) {
          canClose = false;
          say(ui.message, 'This server cannot close rooms yet (no room.close); kick the members instead.', 'bad');
        } else {
          fail(error);
        }
      }
      refresh();
    },
  }, isArmed ? `Confirm ${text.toLowerCase()}` : text);
}

let lastRooms = [];
function refreshRowsOnly() {
  renderRooms(lastRooms);
}

function renderAudit(entries, rooms) {
  const names = new Map();
  for (const e of entries) if (e.user_id && e.name) names.set(e.user_id, e.name);
  for (const room of rooms) for (const m of room.members) names.set(m.user_id, m.name);
  fill(ui.audit, entries.length
    ? entries.map((e) => h('li', {},
      h('time', { datetime: new Date(e.at_ms).toISOString() }, timeOfDay(e.at_ms)),
      h('span', { class: 'mono' }, e.room), ' · ',
      e.name || (e.user_id ? names.get(e.user_id) ?? 'someone' : 'the room'), ' ',
      h('strong', {}, e.action),
      e.target_id ? ` → ${names.get(e.target_id) ?? e.target_id.slice(0, 8)}` : ''))
    : h('li', { class: 'muted' }, 'Nothing yet.'));
}

start();
