/**
 * The popup (also usable as a tab: chrome-extension://<id>/popup/popup.html): sign in, create
 * or join a room, recent rooms, server URL. It only asks the service worker (rpc) and shows
 * the status the worker pushes; it keeps no state of its own.
 */

import { PORT, PUSH, rpc } from '../shared/messages.js';

const $ = (id) => document.getElementById(id);
let status = null;

function showError(err) {
  const box = $('error');
  box.hidden = !err;
  box.textContent = err ? err.message : '';
  box.dataset.code = err?.code ?? '';
}

function render(next) {
  status = next;
  const signedIn = Boolean(status.user);
  $('connection').className = `dot ${status.connection}`;
  $('connection').title = `Connection: ${status.connection}`;
  $('connection').dataset.state = status.connection;
  $('signed-out').hidden = signedIn;
  $('signed-in').hidden = !signedIn;
  $('user-name').textContent = status.user?.name ?? '';
  $('current-room').hidden = !status.room;
  $('room-code').textContent = status.room ?? '';
  $('room-state').textContent = status.room ? (status.joined ? 'joined' : 'joining…') : '';
  if (document.activeElement !== $('server-url')) $('server-url').value = status.serverUrl ?? '';
  const recent = (status.recentRooms ?? []).filter((r) => r.code !== status.room);
  $('recent').hidden = recent.length === 0;
  $('recent-rooms').replaceChildren(...recent.map((r) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.code = r.code;
    button.textContent = r.name ? `${r.name} · ${r.code}` : r.code;
    button.addEventListener('click', () => act(() => rpc('joinRoom', { code: r.code })));
    const li = document.createElement('li');
    li.append(button);
    return li;
  }));
  if (status.error && !document.body.dataset.busy) showError(status.error);
}

/** Run one rpc with the buttons disabled; show its error, or the new status. */
async function act(fn) {
  document.body.dataset.busy = '1';
  for (const b of document.querySelectorAll('button')) b.disabled = true;
  showError(null);
  try {
    const next = await fn();
    if (next?.connection) render(next);
  } catch (err) {
    showError(err);
  } finally {
    delete document.body.dataset.busy;
    for (const b of document.querySelectorAll('button')) b.disabled = false;
  }
}

const onSubmit = (id, fn) => $(id).addEventListener('submit', (ev) => {
  ev.preventDefault();
  act(fn);
});

onSubmit('guest-form', () => rpc('signInGuest', { name: $('guest-name').value }));
$('google-sign-in').addEventListener('click', () => act(() => rpc('signInGoogle')));
$('sign-out').addEventListener('click', () => act(() => rpc('signOut')));
onSubmit('create-form', () => rpc('createRoom', { name: $('room-name').value.trim() || undefined, control_mode: $('control-mode').value }));
onSubmit('join-form', () => rpc('joinRoom', { code: $('join-code').value.trim() }));
$('leave-room').addEventListener('click', () => act(() => rpc('leaveRoom')));
onSubmit('server-form', () => rpc('setServer', { url: $('server-url').value.trim() }));

// Status pushes while the popup is open; reconnect if the worker restarts meanwhile.
function listen() {
  const port = chrome.runtime.connect({ name: PORT.POPUP });
  port.onMessage.addListener((msg) => {
    if (msg.type === PUSH.STATUS) render(msg.status);
  });
  port.onDisconnect.addListener(() => setTimeout(listen, 200));
}
listen();
rpc('status').then(render, showError);
