/**
 * The service worker: one Session (the socket, the room, the sign-in) and the message
 * routes to it. Listeners are registered synchronously at the top level, as MV3 requires for
 * a worker that Chrome starts again to deliver an event.
 */

import { Session } from './session.js';

const session = new Session();
// For debugging from the worker's console (and for the browser tests).
globalThis.sharetube = session;

const RPC = {
  status: () => session.loaded.then(() => session.status()),
  setServer: ({ url }) => session.setServer(url),
  signInGuest: ({ name }) => session.signIn('guest', name),
  signInGoogle: () => session.signIn('google'),
  signOut: () => session.signOut(),
  createRoom: ({ name, control_mode: controlMode }) => session.createRoom({ name, control_mode: controlMode }),
  joinRoom: ({ code }) => session.joinRoom(code),
  leaveRoom: () => session.leaveRoom(),
  command: ({ type, data }) => session.command(type, data ?? {}),
  ad: ({ showing }) => session.loaded.then(() => session.reports.ad(Boolean(showing))),
  drift: ({ samples }) => session.loaded.then(() => session.reports.drift(Array.isArray(samples) ? samples : [])),
};

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  // Only our own pages and content scripts can reach onMessage (no externally_connectable).
  if (sender.id !== chrome.runtime.id || typeof msg?.rpc !== 'string') return false;
  const handler = Object.hasOwn(RPC, msg.rpc) ? RPC[msg.rpc] : null;
  if (!handler) {
    sendResponse({ ok: false, error: { code: 'unknown_type', message: `no rpc ${msg.rpc}` } });
    return false;
  }
  Promise.resolve()
    .then(() => handler(msg))
    .then(
      (data) => sendResponse({ ok: true, data: data ?? {} }),
      (err) => sendResponse({ ok: false, error: { code: err?.code ?? 'internal', message: err?.message ?? String(err) } }),
    );
  return true; // the answer comes asynchronously
});

chrome.runtime.onConnect.addListener((port) => session.attach(port));
