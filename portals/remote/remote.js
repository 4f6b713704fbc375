/**
 * The mobile remote (/mobile-remote?room=CODE): control a room's playback and queue, see who
 * is there and chat, from a phone. Opened from the QR code the extension shows, or by typing
 * a code. It joins as a non-player (it plays no video), so the room never waits for it.
 *
 * All protocol work is the shared client's (/static/js/sharetube-client.js): the snapshot and
 * events give the state, and expectedPositionMs() on the synced server clock gives the
 * position, so the time shown ticks in step with every player in the room.
 */
import { evictionMessage } from '/static/js/sharetube-client.js';
import { $, clock, describe, fill, h, say } from '/static/common/dom.js';
import {
  currentUser, liveClient, signInForm, signOut, storedToken, takeSignInResult,
} from '/static/common/session.js';

const ui = {
  status: $('#status'),
  message: $('#message'),
  signin: $('#signin'),
  pick: $('#pick-room'),
  roomForm: $('#room-form'),
  roomInput: $('#room-code'),
  room: $('#room'),
  code: $('#room-code-label'),
  name: $('#room-name'),
  leave: $('#leave'),
  title: $('#now-title'),
  playStatus: $('#play-status'),
  seekbar: $('#seekbar'),
  position: $('#position'),
  duration: $('#duration'),
  playpause: $('#playpause'),
  restart: $('#restart'),
  back10: $('#back10'),
  fwd10: $('#fwd10'),
  skip: $('#skip'),
  addForm: $('#add-form'),
  addUrl: $('#add-url'),
  queue: $('#queue'),
  queueCount: $('#queue-count'),
  members: $('#members'),
  membersCount: $('#members-count'),
  chat: $('#chat'),
  chatForm: $('#chat-form'),
  chatText: $('#chat-text'),
  who: $('#who'),
};

const TICK_MS = 250;
const STATUS_TEXT = {
  connecting: ['Connecting…', 'neutral'],
  open: ['Connected', 'ok'],
  reconnecting: ['Reconnecting…', 'bad'],
  signed_out: ['Signed out', 'neutral'],
};

let user = null;
let live = null;
let wanted = new URLSearchParams(location.search).get('room');
let joining = false;
let seeking = false; // the thumb is held: the ticking position must not move it
let drag = null; // a queue entry being dragged: re-renders wait until it is dropped
let focusAfterRender = null;
let ticking = null;

const client = () => live?.client;
const state = () => (wanted ? client()?.getState(wanted) : undefined);
const fail = (error) => say(ui.message, describe(error), 'bad');

/** Run a command; its error is shown, never thrown. */
async function run(command) {
  try {
    await command();
  } catch (error) {
    fail(error);
  }
}

// --- sign-in ------------------------------------------------------------------------------

async function start() {
  const failed = takeSignInResult();
  if (failed) say(ui.message, failed.message, 'bad');
  try {
    user = await currentUser();
  } catch (error) {
    fail(error);
  }
  if (user) signedIn();
  else showSignIn();
}

function showSignIn() {
  ui.room.hidden = true;
  ui.pick.hidden = true;
  ui.who.hidden = true;
  ui.signin.hidden = false;
  signInForm(ui.signin, {
    prompt: 'Sign in to use the remote',
    onSignedIn: (signed) => {
      user = signed;
      signedIn();
    },
    onError: fail,
  });
  if (wanted) ui.signin.append(h('p', { class: 'small muted' }, 'Then you join room ', h('strong', { class: 'mono' }, wanted), '.'));
}

function signedIn() {
  ui.signin.hidden = true;
  const out = h('button', { type: 'button', class: 'link-button', onclick: leaveAndSignOut }, 'Sign out');
  fill(ui.who, `Signed in as ${user.name} · `, out);
  ui.who.hidden = false;

  live = liveClient(storedToken(), { onStatus: showStatus });
  const c = live.client;
  c.on('open', () => {
    if (wanted && !c.getState(wanted)) joinWanted();
  });
  c.on('state', ({ room, cause }) => {
    if (room === wanted) render(cause);
  });
  c.on('evicted', ({ room, reason }) => {
    if (room !== wanted) return;
    say(ui.message, evictionMessage(room, reason), 'bad');
    showPick();
  });
  c.on('error', ({ source, room, error }) => {
    if (source === 'join' && room === wanted && !c.getState(room)) {
      fail(error);
      showPick();
    }
  });
  if (wanted) openRoom(wanted);
  else showPick();
  ticking ??= setInterval(tick, TICK_MS);
}

async function leaveAndSignOut() {
  live?.stop();
  await signOut();
  location.reload();
}

function showStatus(status) {
  const [text, kind] = STATUS_TEXT[status] ?? [status, 'neutral'];
  ui.status.textContent = text;
  ui.status.className = `pill ${kind}`;
  if (status === 'signed_out') {
    user = null;
    showSignIn();
  }
}

// --- the room -----------------------------------------------------------------------------

function showPick() {
  const leaving = wanted;
  wanted = null;
  if (leaving && client()?.getState(leaving)) client().leave(leaving).catch(() => {});
  history.replaceState(null, '', location.pathname);
  ui.room.hidden = true;
  ui.pick.hidden = false;
  ui.roomInput.focus();
}

function openRoom(code) {
  wanted = code;
  const url = new URL(location.href);
  url.searchParams.set('room', code);
  history.replaceState(null, '', url.pathname + url.search);
  ui.pick.hidden = true;
  if (client().connected) joinWanted();
  // else: joined when the socket opens
}

async function joinWanted() {
  if (joining || !wanted) return;
  joining = true;
  const code = wanted;
  try {
    await client().join(code);
    if (code === wanted) {
      ui.room.hidden = false;
      render();
    }
  } catch (error) {
    if (error.code === 'timeout') setTimeout(joinWanted, 2000);
    else if (error.code !== 'disconnected' && code === wanted) {
      fail(error);
      showPick();
    }
    // disconnected: joined again when the socket reopens
  } finally {
    joining = false;
  }
}

ui.roomForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const code = ui.roomInput.value.trim();
  if (code) openRoom(code);
});
ui.leave.addEventListener('click', showPick);

// --- rendering ----------------------------------------------------------------------------

const isRunning = (status) => status === 'playing' || status === 'starting';

/** Draw the room, or only the part an event changed (`cause`: the event type). */
function render(cause = 'snapshot') {
  const s = state();
  if (!s) return;
  const all = !['playback', 'queue', 'members', 'chat', 'settings'].includes(cause);
  ui.room.hidden = false;
  ui.code.textContent = s.room?.code ?? wanted;
  ui.name.textContent = s.settings?.name ?? '';
  if (all || cause === 'playback') renderPlayback(s);
  if ((all || cause === 'queue') && !drag) keepFocus(ui.queue, () => renderQueue(s));
  if (all || cause === 'members') renderMembers(s);
  if (all || cause === 'chat') renderChat(s);
  if (focusAfterRender) {
    ui.queue.querySelector(`[data-key="handle:${CSS.escape(focusAfterRender)}"]`)?.focus();
    focusAfterRender = null;
  }
}

/** Re-drawing a list replaces its buttons: give focus back to the one that had it. */
function keepFocus(root, draw) {
  const key = root.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  draw();
  if (key) root.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

function renderPlayback(s) {
  const pb = s.playback ?? {};
  ui.title.textContent = pb.title || pb.video_id || 'Nothing playing';
  ui.playStatus.textContent = pb.status ?? 'idle';
  ui.playStatus.className = `pill ${isRunning(pb.status) ? 'ok' : 'neutral'}`;
  const running = isRunning(pb.status);
  ui.playpause.querySelector('.play').toggleAttribute('hidden', running);
  ui.playpause.querySelector('.pause').toggleAttribute('hidden', !running);
  ui.playpause.setAttribute('aria-label', running ? 'Pause' : 'Play');
  const duration = Number.isFinite(pb.duration_ms) && pb.duration_ms > 0 ? pb.duration_ms : 0;
  ui.duration.textContent = duration ? clock(duration) : '–:––';
  ui.seekbar.max = String(duration || Math.max(0, client().expectedPositionMs(wanted)) + 60_000);
  ui.seekbar.disabled = !pb.entry_id;
  tick();
}

function tick() {
  if (!wanted || !state()) return;
  const position = Math.floor(client().expectedPositionMs(wanted));
  ui.position.textContent = clock(position);
  ui.position.dataset.positionMs = String(position);
  if (!seeking) {
    if (position > Number(ui.seekbar.max)) ui.seekbar.max = String(position + 60_000);
    ui.seekbar.value = String(position);
    ui.seekbar.setAttribute('aria-valuetext', `${clock(position)} of ${ui.duration.textContent}`);
  }
}

function entryTitle(entry) {
  return entry.title || entry.video_id;
}

function renderQueue(s) {
  const entries = s.queue ?? [];
  ui.queueCount.textContent = entries.length ? `(${entries.length})` : '';
  if (!entries.length) {
    fill(ui.queue, h('li', { class: 'muted' }, 'The queue is empty. Add a link above.'));
    return;
  }
  fill(ui.queue, entries.map((entry, index) => {
    const title = entryTitle(entry);
    const handle = h('button', {
      type: 'button',
      class: 'handle',
      dataset: { key: `handle:${entry.id}` },
      'aria-label': `Move “${title}”, number ${index + 1} of ${entries.length}`,
      onkeydown: (ev) => keyMove(ev, entry, index, entries.length),
      onpointerdown: (ev) => startDrag(ev, entry),
    }, '☰');
    const details = [entry.added_by_name && `added by ${entry.added_by_name}`,
      Number.isFinite(entry.duration_ms) && clock(entry.duration_ms)].filter(Boolean).join(' · ');
    return h('li', { dataset: { entryId: entry.id } },
      handle,
      h('div', { class: 'entry' },
        h('div', { class: 'title' }, title),
        details && h('div', { class: 'small muted' }, details)),
      h('button', {
        type: 'button',
        class: 'remove',
        dataset: { key: `remove:${entry.id}` },
        'aria-label': `Remove “${title}”`,
        onclick: () => run(() => client().queueRemove(entry.id, { room: wanted })),
      }, '✕'));
  }));
}

function renderMembers(s) {
  const members = s.members ?? [];
  const online = members.filter((m) => m.online).length;
  ui.membersCount.textContent = `(${online} online)`;
  fill(ui.members, members.map((m) => h('li', {},
    h('span', { class: `dot${m.online ? ' on' : ''}`, 'aria-hidden': 'true' }),
    h('span', { class: 'grow' }, m.name || 'Someone', m.user_id === user?.id ? ' (you)' : ''),
    m.role !== 'member' && h('span', { class: 'pill neutral' }, m.role),
    h('span', { class: m.online ? 'visually-hidden' : 'small muted' },
      m.online ? 'online' : m.away ? 'away' : 'offline'),
    m.player && h('span', { class: 'small muted' }, 'watching'))));
}

function renderChat(s) {
  const messages = s.chat ?? [];
  const shown = [...ui.chat.children].map((li) => li.dataset.messageId);
  const lastShown = shown.at(-1);
  const from = lastShown ? messages.findIndex((m) => m.id === lastShown) + 1 : 0;
  const atBottom = ui.chat.scrollHeight - ui.chat.scrollTop - ui.chat.clientHeight < 40;
  const line = (m) => h('li', { dataset: { messageId: m.id } },
    h('span', { class: 'author' }, m.name), ': ', m.text);
  const prefixIntact = from > 0 && shown.every((id, i) => messages[from - shown.length + i]?.id === id);
  if (prefixIntact) ui.chat.append(...messages.slice(from).map(line));
  else fill(ui.chat, messages.map(line)); // first render, a deletion, or a resync
  if (atBottom) ui.chat.scrollTop = ui.chat.scrollHeight;
}

// --- playback controls ----------------------------------------------------------------------

const room = () => ({ room: wanted });
const duration = () => state()?.playback?.duration_ms;

function seekBy(deltaMs) {
  const target = client().expectedPositionMs(wanted) + deltaMs;
  const end = duration();
  const clamped = Math.max(0, Number.isFinite(end) && end > 0 ? Math.min(target, end - 1000) : target);
  return run(() => client().seek(clamped, room()));
}

ui.playpause.addEventListener('click', () => run(() => (isRunning(state()?.playback?.status)
  ? client().pause(room())
  : client().play(room()))));
ui.restart.addEventListener('click', () => run(() => client().restart(room())));
ui.skip.addEventListener('click', () => run(() => client().skip(room())));
ui.back10.addEventListener('click', () => seekBy(-10_000));
ui.fwd10.addEventListener('click', () => seekBy(10_000));

ui.seekbar.addEventListener('input', () => {
  seeking = true;
  ui.position.textContent = clock(Number(ui.seekbar.value));
});
ui.seekbar.addEventListener('change', async () => {
  await run(() => client().seek(Number(ui.seekbar.value), room()));
  seeking = false;
});
ui.seekbar.addEventListener('blur', () => { seeking = false; });

// --- queue ------------------------------------------------------------------------------------

ui.addForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const value = ui.addUrl.value.trim();
  if (!value) return;
  try {
    await client().queueAdd(value, room());
    ui.addUrl.value = '';
    say(ui.message, 'Added to the queue.', 'ok');
  } catch (error) {
    fail(error);
  }
});

function keyMove(ev, entry, index, count) {
  const to = { ArrowUp: index - 1, ArrowDown: index + 1, Home: 0, End: count - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  if (to < 0 || to >= count || to === index) return;
  focusAfterRender = entry.id;
  run(() => client().queueMove(entry.id, to, room()));
}

/**
 * Drag by the handle with a finger (or a mouse): the row follows the pointer, the drop point
 * is the number of other rows whose middle is above the dragged row's middle, which is the
 * index `queue.move` takes (the entry is taken out, then inserted there).
 */
function startDrag(ev, entry) {
  if (ev.pointerType === 'mouse' && ev.button !== 0) return;
  const li = ev.currentTarget.closest('li');
  const rows = [...ui.queue.children];
  const from = rows.indexOf(li);
  if (from < 0 || rows.length < 2) return;
  ev.preventDefault();
  const handle = ev.currentTarget;
  handle.setPointerCapture(ev.pointerId);
  const others = rows.filter((r) => r !== li);
  const mids = others.map((r) => { const b = r.getBoundingClientRect(); return b.top + b.height / 2; });
  const box = li.getBoundingClientRect();
  const startY = ev.clientY;
  drag = { entry, from, to: from };
  li.classList.add('dragging');

  const mark = () => {
    for (const r of others) r.classList.remove('drop-target', 'drop-after');
    if (drag.to === from) return;
    if (drag.to < others.length) others[drag.to].classList.add('drop-target');
    else others.at(-1).classList.add('drop-after');
  };
  const onMove = (e) => {
    const dy = e.clientY - startY;
    li.style.transform = `translateY(${dy}px)`;
    const middle = box.top + box.height / 2 + dy;
    drag.to = mids.filter((m) => m < middle).length;
    mark();
  };
  const onEnd = (e) => {
    handle.removeEventListener('pointermove', onMove);
    handle.removeEventListener('pointerup', onEnd);
    handle.removeEventListener('pointercancel', onEnd);
    li.style.transform = '';
    li.classList.remove('dragging');
    for (const r of others) r.classList.remove('drop-target', 'drop-after');
    const { to } = drag;
    drag = null;
    if (e.type === 'pointerup' && to !== from) {
      run(() => client().queueMove(entry.id, to, room())).then(render);
    } else {
      render();
    }
  };
  handle.addEventListener('pointermove', onMove);
  handle.addEventListener('pointerup', onEnd);
  handle.addEventListener('pointercancel', onEnd);
}

// --- chat -------------------------------------------------------------------------------------

ui.chatForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = ui.chatText.value.trim();
  if (!text) return;
  try {
    await client().chatSend(text, room());
    ui.chatText.value = '';
  } catch (error) {
    fail(error);
  }
});

start();
