/**
 * Small DOM helpers for the portals: no framework, text always set as text (never HTML).
 */

/**
 * Build an element: h('button', {class: 'primary', onclick: fn, 'aria-label': 'Play'}, 'Play').
 * Keys starting with `on` become listeners; `dataset` an object; other keys attributes.
 * Children: strings (as text nodes), nodes, arrays, null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** 83_000 → "1:23", 3_723_000 → "1:02:03". */
export function clock(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const s = total % 60;
  const m = Math.floor(total / 60) % 60;
  const hours = Math.floor(total / 3600);
  const ss = String(s).padStart(2, '0');
  return hours ? `${hours}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "14:05" for a server timestamp in ms, in the viewer's locale. */
export function timeOfDay(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/**
 * Show a short message in a live region (role=status or alert) and clear it after a while.
 * @param {HTMLElement} region
 * @param {string} text
 * @param {'ok'|'bad'} [kind]
 */
export function say(region, text, kind = 'ok') {
  region.className = `notice ${kind}`;
  region.textContent = text;
  region.hidden = !text;
  clearTimeout(region._timer);
  if (text) region._timer = setTimeout(() => { region.hidden = true; }, kind === 'bad' ? 8000 : 4000);
}

/**
 * A sentence for a ShareTubeError: the server's own message (written for people), or ours
 * for what the client itself reports.
 */
export function describe(error) {
  const ours = {
    disconnected: 'Not connected right now; try again in a moment.',
    timeout: 'The server did not answer in time; try again.',
    not_joined: 'Join a room first.',
    unknown_type: 'This server does not support that yet.',
  };
  return ours[error?.code] ?? error?.message ?? String(error);
}
