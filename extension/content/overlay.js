/**
 * The overlay on youtube.com: room code and QR code for the mobile remote, connection state,
 * playback controls, the queue (drag to reorder), members and chat. It lives in a shadow root
 * on <html>, so YouTube's CSS cannot reach it and YouTube's re-renders of <body> cannot
 * remove it. Everything the user typed or any member named is set as text, never as HTML.
 */

import { expectedPositionMs } from '../lib/sharetube-client.js';
import { CONN, remoteUrl } from '../shared/messages.js';
import { qrSvg } from './qr.js';

const CSS = `
:host { all: initial; }
[hidden] { display: none !important; }
.panel { position: fixed; top: 64px; right: 12px; z-index: 2147483000; width: 320px;
  max-height: calc(100vh - 80px); display: flex; flex-direction: column; overflow: hidden;
  font: 13px/1.4 system-ui, sans-serif; color: #f1f1f1; background: rgba(24, 24, 27, .96);
  border: 1px solid #3f3f46; border-radius: 10px; box-shadow: 0 8px 24px rgba(0,0,0,.5); }
.panel.collapsed .body { display: none; }
header { display: flex; align-items: center; gap: 8px; padding: 8px 10px; background: #18181b;
  border-bottom: 1px solid #3f3f46; }
header .title { font-weight: 700; color: #ef4444; }
header .code { font-family: ui-monospace, monospace; letter-spacing: .08em; }
header .grow { flex: 1; }
.dot { width: 9px; height: 9px; border-radius: 50%; background: #71717a; display: inline-block; }
.dot.open { background: #22c55e; } .dot.connecting { background: #eab308; } .dot.closed { background: #ef4444; }
.body { overflow-y: auto; padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 10px; }
section h3 { margin: 0 0 4px; font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: #a1a1aa; }
button { font: inherit; color: #f4f4f5; background: #27272a; border: 1px solid #52525b; border-radius: 6px;
  padding: 4px 8px; cursor: pointer; }
button:hover:not(:disabled) { background: #3f3f46; }
button:disabled { opacity: .45; cursor: default; }
button.primary { background: #b91c1c; border-color: #dc2626; }
.row { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.now { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.muted { color: #a1a1aa; }
ol, ul { list-style: none; margin: 0; padding: 0; }
.queue li { display: flex; gap: 6px; align-items: center; padding: 4px 6px; margin-bottom: 3px;
  background: #27272a; border-radius: 6px; cursor: grab; }
.queue li.current { border-left: 3px solid #ef4444; }
.queue li.drop-before { box-shadow: 0 -2px 0 #ef4444; }
.queue li .t { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.queue li button { padding: 0 6px; }
.members li { display: flex; gap: 6px; align-items: center; }
.members .role { font-size: 11px; color: #a1a1aa; }
.chat .log { max-height: 140px; overflow-y: auto; background: #111113; border-radius: 6px; padding: 4px 6px; }
.chat .log div { word-wrap: break-word; } .chat .log b { color: #fca5a5; }
select { font: inherit; color: #f4f4f5; background: #27272a; border: 1px solid #52525b; border-radius: 6px; padding: 3px 4px; }
input { font: inherit; color: #f4f4f5; background: #111113; border: 1px solid #52525b; border-radius: 6px;
  padding: 4px 6px; flex: 1; min-width: 0; }
.qr { display: flex; gap: 8px; align-items: center; }
.qr svg { border-radius: 4px; flex: none; }
.qr a { color: #93c5fd; word-break: break-all; font-size: 11px; }
.notice { background: #422006; border: 1px solid #a16207; border-radius: 6px; padding: 4px 8px; }
.notice:empty { display: none; }
`;

// Speeds offered for the room (the rooms service accepts 0.25-2, as YouTube's player).
const RATES = [0.5, 0.75, 1, 1.25, 1.5, 2];

const fmt = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
};

/** A DOM element: h('button', {class: 'x', onclick}, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

export class Overlay {
  /**
   * @param {object} actions
   * @param {(type: string, data?: object) => Promise<any>} actions.command
   * @param {() => Promise<any>} actions.addCurrent
   * @param {() => void} actions.backToRoom
   */
  constructor(actions) {
    this.actions = actions;
    this.view = null;
    this.status = null;
    this.dragging = null;
    this.qrFor = null;
    this.host = h('sharetube-overlay', { id: 'sharetube-overlay' });
    this.root = this.host.attachShadow({ mode: 'open' });
    this._build();
    document.documentElement.append(this.host);
    // Keep the position display ticking between state pushes.
    setInterval(() => this._renderPosition(), 250);
  }

  _build() {
    const $ = {};
    const btn = (name, label, onclick, extra = {}) => ($[name] = h('button', { 'data-st': name, onclick, ...extra }, label));
    const cmd = (type, data) => () => this._run(() => this.actions.command(type, typeof data === 'function' ? data() : data));
    $.dot = h('span', { class: 'dot', 'data-st': 'connection' });
    $.code = h('span', { class: 'code', 'data-st': 'room-code' });
    $.panel = h('div', { class: 'panel', part: 'panel' },
      h('header', {},
        h('span', { class: 'title' }, 'ShareTube'), $.dot, $.code, h('span', { class: 'grow' }),
        btn('collapse', '–', () => this._toggle(), { title: 'Collapse', 'aria-label': 'Collapse' })),
      ($.body = h('div', { class: 'body' },
        ($.notice = h('div', { class: 'notice', 'data-st': 'notice', role: 'status' })),
        ($.away = h('div', { class: 'row', hidden: true },
          h('span', { class: 'muted' }, 'You are off the room\'s video.'),
          btn('back', 'Back to the room', () => this.actions.backToRoom()))),
        ($.hint = h('div', { class: 'muted', 'data-st': 'hint' })),
        ($.room = h('div', {},
          h('section', {},
            ($.now = h('div', { class: 'now', 'data-st': 'now-playing' })),
            ($.pos = h('div', { class: 'muted', 'data-st': 'position' }))),
          h('section', { class: 'row controls' },
            btn('play', '▶ Play', cmd('play'), { class: 'primary' }),
            btn('pause', '❚❚ Pause', cmd('pause')),
            btn('back10', '−10 s', cmd('seek', () => ({ position_ms: Math.max(0, this._position() - 10_000) }))),
            btn('fwd10', '+10 s', cmd('seek', () => ({ position_ms: this._position() + 10_000 }))),
            btn('restart', '⟲', cmd('restart'), { title: 'Restart', 'aria-label': 'Restart' }),
            btn('skip', 'Skip »', cmd('skip')),
            ($.rate = h('select', {
              'data-st': 'rate',
              title: 'Speed for everybody',
              'aria-label': 'Playback speed for everybody',
              onchange: () => this._run(() => this.actions.command('rate', { rate: Number($.rate.value) })),
            }, ...RATES.map((r) => h('option', { value: String(r) }, `${r}×`))))),
          h('section', { class: 'row' },
            btn('add-current', '+ Add this video', () => this._run(() => this.actions.addCurrent()))),
          h('section', { class: 'queue' }, h('h3', {}, 'Queue'), ($.queue = h('ol', { 'data-st': 'queue' }))),
          h('section', { class: 'members' }, h('h3', {}, 'Members'), ($.members = h('ul', { 'data-st': 'members' }))),
          h('section', { class: 'chat' }, h('h3', {}, 'Chat'),
            ($.chatLog = h('div', { class: 'log', 'data-st': 'chat-log', 'aria-live': 'polite' })),
            h('form', { class: 'row', onsubmit: (ev) => this._chat(ev) },
              ($.chatInput = h('input', { 'data-st': 'chat-input', maxlength: 500, placeholder: 'Say something', 'aria-label': 'Chat message' })),
              h('button', { type: 'submit', 'data-st': 'chat-send' }, 'Send'))),
          h('section', {}, h('h3', {}, 'Phone remote'),
            ($.qr = h('div', { class: 'qr', 'data-st': 'qr' }))))))));
    const style = h('style', {}, CSS);
    this.root.append(style, $.panel);
    this.$ = $;
    if (localStorage.getItem('sharetube.collapsed') === '1') $.panel.classList.add('collapsed');
  }

  _toggle() {
    const collapsed = this.$.panel.classList.toggle('collapsed');
    localStorage.setItem('sharetube.collapsed', collapsed ? '1' : '0');
  }

  async _run(fn) {
    try {
      await fn();
    } catch (err) {
      this.notice(err.code === 'forbidden' ? 'The room\'s owner controls playback here.' : err.message);
    }
  }

  _chat(ev) {
    ev.preventDefault();
    const text = this.$.chatInput.value.trim();
    if (!text) return;
    this._run(async () => {
      await this.actions.command('chat.send', { text });
      this.$.chatInput.value = '';
    });
  }

  notice(text) {
    this.$.notice.textContent = text ?? '';
    clearTimeout(this._noticeTimer);
    if (text) this._noticeTimer = setTimeout(() => { this.$.notice.textContent = ''; }, 6000);
  }

  _position() {
    const pb = this.view?.state?.playback;
    return expectedPositionMs(pb, Date.now() + (this.view?.clock?.offsetMs ?? 0));
  }

  // --- rendering ----------------------------------------------------------------------------

  /** @param {object} status the worker's status push */
  setStatus(status) {
    this.status = status;
    this.render();
  }

  /** @param {object} view the worker's state push */
  setView(view) {
    this.view = view;
    this.render();
  }

  render() {
    const { $ } = this;
    const connection = this.view?.connection ?? this.status?.connection ?? CONN.CLOSED;
    $.dot.className = `dot ${connection}`;
    $.dot.title = `Connection: ${connection}`;
    $.dot.dataset.state = connection;
    const state = this.view?.state;
    const room = this.view?.room ?? null;
    $.code.textContent = room ?? '';
    $.room.hidden = !state;
    if (!state) {
      $.hint.textContent = this.status?.user
        ? 'Open the ShareTube button in the toolbar to create or join a room.'
        : 'Sign in with the ShareTube button in the toolbar to watch together.';
      return;
    }
    $.hint.textContent = this.view.player ? '' : 'Another tab plays the room\'s video.';
    const allowed = Boolean(this.view.canControl);
    for (const name of ['play', 'pause', 'back10', 'fwd10', 'restart', 'skip', 'rate']) $[name].disabled = !allowed;
    const pb = state.playback ?? {};
    if (this.root.activeElement !== $.rate) $.rate.value = String(pb.rate ?? 1);
    const entry = state.queue.find((e) => e.id === pb.entry_id);
    $.now.textContent = pb.entry_id ? (pb.title ?? entry?.title ?? pb.video_id) : 'Nothing playing';
    $.now.dataset.status = pb.status ?? 'idle';
    this._renderPosition();
    if (!this.dragging) this._renderQueue(state, allowed);
    this._renderMembers(state);
    this._renderChat(state);
    this._renderQr(room);
  }

  _renderPosition() {
    const pb = this.view?.state?.playback;
    if (!pb) return;
    const duration = pb.duration_ms ? ` / ${fmt(pb.duration_ms)}` : '';
    this.$.pos.textContent = `${pb.status} · ${fmt(this._position())}${duration}`;
  }

  setAway(away) {
    this.$.away.hidden = !away;
  }

  _renderQueue(state, allowed) {
    const current = state.playback?.entry_id;
    const items = state.queue.map((entry, index) => {
      const li = h('li', {
        draggable: 'true',
        'data-entry': entry.id,
        'data-index': index,
        class: entry.id === current ? 'current' : null,
      },
      h('span', { class: 't', title: entry.title ?? entry.video_id }, entry.title ?? entry.video_id),
      h('span', { class: 'muted' }, entry.duration_ms ? fmt(entry.duration_ms) : ''),
      h('button', {
        'data-st': 'remove',
        title: 'Remove',
        'aria-label': `Remove ${entry.title ?? entry.video_id}`,
        onclick: () => this._run(() => this.actions.command('queue.remove', { entry_id: entry.id })),
      }, '×'));
      li.addEventListener('dragstart', (ev) => {
        this.dragging = entry.id;
        ev.dataTransfer.effectAllowed = 'move';
        ev.dataTransfer.setData('text/plain', entry.id);
      });
      li.addEventListener('dragend', () => {
        this.dragging = null;
        this.render();
      });
      li.addEventListener('dragover', (ev) => {
        ev.preventDefault();
        li.classList.add('drop-before');
      });
      li.addEventListener('dragleave', () => li.classList.remove('drop-before'));
      li.addEventListener('drop', (ev) => {
        ev.preventDefault();
        li.classList.remove('drop-before');
        const moved = ev.dataTransfer.getData('text/plain') || this.dragging;
        this.dragging = null;
        if (moved && moved !== entry.id) {
          this._run(() => this.actions.command('queue.move', { entry_id: moved, index }));
        }
      });
      return li;
    });
    if (!items.length) items.push(h('li', { class: 'muted' }, 'Empty: add the video you are watching.'));
    this.$.queue.replaceChildren(...items);
    this.$.queue.dataset.allowed = String(allowed);
  }

  _renderMembers(state) {
    const me = this.view?.me?.id;
    this.$.members.replaceChildren(...state.members.map((m) => h('li', { 'data-user': m.user_id },
      h('span', { class: `dot ${m.online ? 'open' : ''}`, title: m.online ? 'online' : 'away' }),
      h('span', {}, m.name + (m.user_id === me ? ' (you)' : '')),
      h('span', { class: 'role' }, m.role + (m.player ? ' · ▶' : '')))));
  }

  _renderChat(state) {
    const log = this.$.chatLog;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.replaceChildren(...state.chat.slice(-50).map((m) => h('div', {}, h('b', {}, `${m.name}: `), m.text)));
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  _renderQr(room) {
    const server = this.view?.serverUrl;
    const url = room && server ? remoteUrl(server, room) : null;
    if (url === this.qrFor) return;
    this.qrFor = url;
    if (!url) {
      this.$.qr.replaceChildren();
      return;
    }
    const svg = qrSvg(url);
    svg.setAttribute('aria-label', `QR code for ${url}`);
    this.$.qr.replaceChildren(svg, h('a', { href: url, target: '_blank', rel: 'noopener', 'data-st': 'remote-link' }, url));
    this.$.qr.dataset.text = url;
  }
}
