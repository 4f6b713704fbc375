/**
 * The homepage: what ShareTube is, how to install and start, the public room directory
 * (GET /api/rooms), sign-in, and a room made right here through the shared protocol client.
 */
import { ShareTubeClient } from '/static/js/sharetube-client.js';
import { $, describe, fill, h, say } from '/static/common/dom.js';
import {
  currentUser, signInForm, signOut, socketUrl, storedToken, takeSignInResult,
} from '/static/common/session.js';

const ui = {
  message: $('#message'),
  account: $('#account'),
  signin: $('#signin'),
  rooms: $('#room-list'),
  createForm: $('#create-form'),
  created: $('#created'),
  serverUrl: $('#server-url'),
};

const DIRECTORY_REFRESH_MS = 10_000;
const fail = (error) => say(ui.message, describe(error), 'bad');

ui.serverUrl.textContent = location.origin;

// --- account ------------------------------------------------------------------------------

async function showAccount() {
  let user = null;
  try {
    user = await currentUser();
  } catch (error) {
    fail(error);
  }
  ui.createForm.hidden = !user;
  if (!user) {
    fill(ui.account, h('a', { href: '#signin' }, 'Sign in'));
    signInForm(ui.signin, { onSignedIn: showAccount, onError: fail, prompt: 'Sign in' });
    return;
  }
  const out = h('button', {
    type: 'button',
    class: 'link-button',
    onclick: async () => {
      await signOut();
      showAccount();
    },
  }, 'Sign out');
  fill(ui.account, `Signed in as ${user.name} `, out);
  fill(ui.signin,
    h('h2', { id: 'signin-title' }, `Hello, ${user.name}`),
    h('p', {}, 'You are signed in on this browser: the remote and the dashboard use the same sign-in.'),
    h('p', {}, h('a', { class: 'button', href: '/mobile-remote' }, 'Open the remote')));
}

// --- public rooms -------------------------------------------------------------------------

function roomItem(room) {
  const playing = room.now_playing ?? {};
  const what = playing.title || playing.video_id;
  const name = room.name || room.code;
  const people = `${room.members_online} ${room.members_online === 1 ? 'person' : 'people'} online`;
  return h('li', { dataset: { roomCode: room.code } },
    h('div', { class: 'info' },
      h('div', { class: 'name' }, name),
      h('div', { class: 'small muted' },
        people, ' · code ', h('span', { class: 'mono' }, room.code),
        what ? ` · ${playing.status === 'playing' ? 'playing' : playing.status}: ${what}` : '')),
    h('div', { class: 'actions' },
      h('a', {
        class: 'button',
        href: `/mobile-remote?room=${encodeURIComponent(room.code)}`,
        'aria-label': `Open the remote for ${name}`,
      }, 'Remote'),
      h('button', {
        type: 'button',
        'aria-label': `Copy the code of ${name}`,
        onclick: () => copyCode(room.code),
      }, 'Copy code')));
}

async function copyCode(code) {
  try {
    await navigator.clipboard.writeText(code);
    say(ui.message, `Copied ${code}: paste it in the ShareTube popup on YouTube.`, 'ok');
  } catch {
    say(ui.message, `The code is ${code}: enter it in the ShareTube popup on YouTube.`, 'ok');
  }
}

async function loadRooms() {
  try {
    const response = await fetch('/api/rooms?limit=50');
    if (!response.ok) throw new Error(`The directory answered ${response.status}.`);
    const { rooms } = await response.json();
    fill(ui.rooms, rooms.length
      ? rooms.map(roomItem)
      : h('li', { class: 'muted' }, 'No public rooms right now. Start one!'));
  } catch (error) {
    fill(ui.rooms, h('li', { class: 'muted' }, `Could not load the rooms: ${describe(error)}`));
  } finally {
    ui.rooms.setAttribute('aria-busy', 'false');
  }
}

// --- start a room here --------------------------------------------------------------------

ui.createForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  const data = { visibility: form.elements.visibility.value };
  const name = form.elements.name.value.trim();
  if (name) data.name = name;
  const client = new ShareTubeClient({ url: socketUrl(), token: storedToken(), clockResyncMs: 0 });
  try {
    await client.connect();
    const { room } = await client.createRoom(data);
    fill(ui.created,
      'Room ', h('span', { class: 'mono' }, room.code), ' is ready. ',
      h('a', { href: `/mobile-remote?room=${encodeURIComponent(room.code)}` }, 'Open its remote'),
      ', or enter the code in the ShareTube popup on YouTube.');
    ui.created.hidden = false;
  } catch (error) {
    fail(error);
  } finally {
    client.disconnect();
    button.disabled = false;
  }
});

const signInFailed = takeSignInResult();
if (signInFailed) say(ui.message, signInFailed.message, 'bad');
showAccount();
loadRooms();
setInterval(() => {
  if (document.visibilityState === 'visible') loadRooms();
}, DIRECTORY_REFRESH_MS);
