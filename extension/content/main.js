/**
 * The content script on youtube.com: connects to the service worker, shows the overlay, and
 * lets VideoSync drive the page's <video> when this tab is the player.
 *
 * The port to the worker dies whenever Chrome stops the worker; it is opened again at once
 * (which starts a new worker), and the new worker pushes the room's state when it has it.
 * Meanwhile the video keeps following the last state it was given.
 */

import { PORT, PUSH, rpc, videoIdFromUrl } from '../shared/messages.js';
import { watchAds } from './ads.js';
import { Overlay } from './overlay.js';
import { VideoSync } from './player.js';

// Drift samples travel to the worker in batches, not one message per tick.
const DRIFT_FLUSH_MS = 10_000;
const RECONNECT_MS = [100, 250, 500, 1000, 2000];

const pageVideoId = () => videoIdFromUrl(location.href);
const findVideo = () => document.querySelector('#movie_player video') ?? document.querySelector('video');

export function main() {
  if (globalThis.__sharetubeStarted) return;
  globalThis.__sharetubeStarted = true;

  const command = (type, data = {}) => rpc('command', { type, data });
  let driftSamples = [];
  const sync = new VideoSync({
    findVideo,
    pageVideoId,
    send: command,
    navigate: (videoId) => location.assign(`/watch?v=${encodeURIComponent(videoId)}`),
    notice: (text) => overlay.notice(text),
    onDrift: (ms) => {
      driftSamples.push(ms);
      // Readable from the page (devtools, the browser tests); says nothing about the user.
      overlay.host.dataset.driftMs = String(Math.round(ms));
    },
  });
  const overlay = new Overlay({
    command,
    addCurrent: () => {
      const videoId = pageVideoId();
      if (!videoId) throw Object.assign(new Error('Open a video first.'), { code: 'no_video' });
      const video = findVideo();
      const duration = video && Number.isFinite(video.duration) ? Math.round(video.duration * 1000) : undefined;
      const title = (document.querySelector('h1')?.textContent ?? document.title.replace(/ - YouTube$/, '')).trim();
      return command('queue.add', { video_id: videoId, title: title.slice(0, 300) || undefined, duration_ms: duration });
    },
    backToRoom: () => {
      const pb = sync.playback;
      if (pb?.video_id) location.assign(`/watch?v=${encodeURIComponent(pb.video_id)}`);
    },
  });

  const ads = watchAds((showing) => {
    sync.setAd(showing);
    // Only the player tab speaks for this user's ads.
    if (sync.view?.player) rpc('ad', { showing }).catch(() => {});
  });

  setInterval(() => {
    if (!driftSamples.length) return;
    const samples = driftSamples;
    driftSamples = [];
    rpc('drift', { samples }).catch(() => {});
  }, DRIFT_FLUSH_MS);

  let port = null;
  let attempts = 0;
  const hello = () => port?.postMessage({ type: 'hello', watch: pageVideoId() !== null });
  const connect = () => {
    if (!chrome.runtime?.id) return; // the extension was reloaded or removed: this script is orphaned
    port = chrome.runtime.connect({ name: PORT.TAB });
    port.onMessage.addListener((msg) => {
      attempts = 0;
      if (msg.type === PUSH.STATUS) overlay.setStatus(msg.status);
      if (msg.type === PUSH.STATE) {
        // A (re)join is a new connection for the room, which knows nothing of an ad in progress.
        if (ads.showing && msg.player && (msg.cause === 'join' || msg.cause === 'snapshot')) {
          rpc('ad', { showing: true }).catch(() => {});
        }
        sync.update(msg);
        overlay.setView(msg);
        overlay.setAway(sync.away);
      }
    });
    port.onDisconnect.addListener(() => {
      port = null;
      setTimeout(connect, RECONNECT_MS[Math.min(attempts++, RECONNECT_MS.length - 1)]);
    });
    hello();
  };
  connect();

  // YouTube navigates in-page (history.pushState) and announces it with `yt-navigate-finish`;
  // the URL poll catches a navigation that event misses.
  let lastHref = location.href;
  const onNavigate = () => {
    if (location.href === lastHref) return;
    lastHref = location.href;
    sync.navigated();
    overlay.setAway(sync.away);
    hello();
  };
  document.addEventListener('yt-navigate-finish', onNavigate);
  window.addEventListener('popstate', onNavigate);
  setInterval(() => {
    onNavigate();
    overlay.setAway(sync.away);
  }, 500);
}
