/**
 * What the extension remembers, in chrome.storage.local (survives the service worker's stops
 * and browser restarts): the server URL, the signed-in user and token, the room we are in,
 * and the recent rooms. One key per field, so writers of different fields never race.
 */

import { DEFAULT_SERVER_URL } from '../shared/messages.js';

/** Rooms kept in the popup's "recent" list. */
const RECENT_KEEP = 8;

/**
 * @typedef {object} Config
 * @property {string} serverUrl
 * @property {{token: string, user: {id: string, name: string}}|null} auth
 * @property {string|null} room  the room code we mean to be in
 * @property {{code: string, name?: string, at: number}[]} recentRooms
 */

/** @returns {Promise<Config>} */
export async function load() {
  const got = await chrome.storage.local.get(['serverUrl', 'auth', 'room', 'recentRooms']);
  return {
    serverUrl: got.serverUrl || DEFAULT_SERVER_URL,
    auth: got.auth?.token ? got.auth : null,
    room: got.room || null,
    recentRooms: Array.isArray(got.recentRooms) ? got.recentRooms : [],
  };
}

/** @param {Partial<Config>} changes */
export async function save(changes) {
  const set = {};
  const remove = [];
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined) remove.push(key);
    else set[key] = value;
  }
  if (remove.length) await chrome.storage.local.remove(remove);
  if (Object.keys(set).length) await chrome.storage.local.set(set);
}

/** The recent list with `room` first, deduplicated by code. */
export function withRecent(recentRooms, room) {
  const rest = recentRooms.filter((r) => r.code !== room.code);
  return [{ ...room, at: Date.now() }, ...rest].slice(0, RECENT_KEEP);
}

/**
 * Count service worker starts in chrome.storage.session (kept while the browser runs, across
 * the worker's stops): the popup shows it, and tests see a restart happened.
 * @returns {Promise<number>}
 */
export async function countStart() {
  const { swStarts = 0 } = await chrome.storage.session.get('swStarts');
  await chrome.storage.session.set({ swStarts: swStarts + 1 });
  return swStarts + 1;
}
