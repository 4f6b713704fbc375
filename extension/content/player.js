/**
 * Drives the page's <video> to follow the room, and turns the user's own play / pause / seek
 * into room commands. The sync rules are DESIGN.md's "Synchronisation", with the shared
 * client's expectedPositionMs and driftCorrection:
 *
 * - `starting`: hold paused at position_ms; once there with data to play, send `ready`.
 * - `playing` with a future anchor: hold at position_ms and call play() at the anchor
 *   (server time → local time through the clock offset the worker measured), so every player
 *   starts at one instant rather than when the event happens to arrive.
 * - `playing`: every tick compare currentTime with the expected position; small drift nudges
 *   playbackRate, large drift seeks.
 * - `paused` / `midroll`: hold paused at position_ms.
 *
 * Events caused by our own play() / pause() / seeks are counted and skipped, so only the
 * user's actions become commands. A user who may not control the room is snapped back.
 */

import { driftCorrection, expectedPositionMs } from '../lib/sharetube-client.js';

// Drift is checked this often; driftCorrection's proportional nudge re-evaluates each tick.
const TICK_MS = 100;
// Held (paused / starting) further than this from the room's position: seek. Under a frame
// at 25 fps, and above the ~1 ms rounding of currentTime.
const HOLD_TOLERANCE_MS = 30;
// A seek by the user counts as a room command only past this: a nudge-sized scrub is noise.
const USER_SEEK_MS = 700;
// After a start or a seek the pipeline needs a moment before currentTime means anything.
const SETTLE_MS = 300;
// A scheduled start re-arms its timer until this close, then spins the rest: setTimeout
// fires a ms or more late. Kept short on purpose: every player on a machine reaches the same
// instant together, and long spins on a busy machine starve the threads that start the clock.
const SPIN_MS = 2;
// A player that finds the room already playing starts this far ahead, at the position the
// room will have then: time for the seek to finish (~100 ms on YouTube, keyframes 2 s apart).
const LATE_START_MS = 400;
// Drift past this is fixed by such a scheduled restart instead of a nudge: it costs a pause of
// LATE_START_MS, where nudging 300 ms away at the 5 % clamp takes 6 s of audibly faster play.
// (driftCorrection's default, 1 s, is for a plain seek, which rebuffers and lands late.)
const RESYNC_MS = 300;
// `ready` normally waits for HAVE_FUTURE_DATA; a player stuck below it reports anyway
// after this, so the start is not held back for the whole PLAYBACK_START_TIMEOUT_MS.
const READY_FALLBACK_MS = 1500;
// Our own events are expected within this; older counts are stale (an event that never came).
const OWN_EVENT_TTL_MS = 3000;
// Hysteresis around driftCorrection's dead band (15 ms): once a nudge starts it goes on until
// the drift is under SETTLED_MS. The reason is a property of Chromium (156, measured here):
// every switch of playbackRate between 1 and any other rate moves the clock, as the audio
// renderer passes audio through at rate 1 and time-stretches (WSOLA) otherwise: entering the
// stretcher sets the clock back ~20 ms, leaving it ~5 ms forward. A controller that stops at
// the dead band's edge falls back out of it at once and oscillates; one with a narrower dead
// band pays a 20 ms jump to fix a 7 ms error. Players in one room start with much the same
// error (the same start latency) and so correct it together: the spread stays small.
const SETTLED_MS = 3;
// Drift is the median of the last few ticks: one late tick must not start a nudge.
const DRIFT_WINDOW = 3;
// Even between two stretched rates a change of playbackRate moves the clock by a few ms, so
// the nudge is re-set only when the wanted rate moved by this much (0.3 %), not every tick.
const RATE_STEP = 0.003;

export class VideoSync {
  /**
   * @param {object} deps
   * @param {() => HTMLVideoElement|null} deps.findVideo
   * @param {() => string|null} deps.pageVideoId        the video id of the page's URL
   * @param {(type: string, data?: object) => Promise<any>} deps.send  a room command
   * @param {(videoId: string) => void} deps.navigate   open the room's video
   * @param {(text: string) => void} deps.notice        tell the user something
   * @param {(driftMs: number) => void} deps.onDrift    a measured drift sample
   */
  constructor({ findVideo, pageVideoId, send, navigate, notice, onDrift }) {
    this._findVideo = findVideo;
    this._pageVideoId = pageVideoId;
    this._send = send;
    this._navigate = navigate;
    this._notice = notice;
    this._onDrift = onDrift;
    this.video = null;
    this.view = null; // the worker's last state push
    this.adShowing = false;
    this.away = false; // the user browsed to another video than the room's
    this.own = { play: 0, pause: 0, seek: 0, at: 0 };
    this.inflight = 0;
    this.readyKey = null;
    this.holdSince = 0;
    this.holdKey = null;
    this.settleUntil = 0;
    this.start = null; // {anchor, timer}
    this.startedFor = null; // the anchor whose start has fired
    this.lastDriftMs = null;
    this.recentDrift = [];
    this.correcting = false;
    this._timer = setInterval(() => this.apply(), TICK_MS);
  }

  // --- inputs -------------------------------------------------------------------------------

  /** A state push from the worker: {state, clock, me, canControl, player}. */
  update(view) {
    this.view = view;
    this.apply();
  }

  setAd(showing) {
    this.adShowing = showing;
    this.apply();
  }

  /** The page navigated (full load or YouTube's in-page navigation). */
  navigated() {
    this.readyKey = null;
    this._cancelStart();
    this.apply();
  }

  get playback() {
    return this.view?.state?.playback ?? null;
  }

  serverNow() {
    return Date.now() + (this.view?.clock?.offsetMs ?? 0);
  }

  // --- the video element ----------------------------------------------------------------

  _bind() {
    const video = this._findVideo();
    if (video === this.video) return video;
    this.video = video;
    this.own = { play: 0, pause: 0, seek: 0, at: 0 };
    if (!video || video.__sharetubeBound) return video;
    video.__sharetubeBound = true;
    const mine = (kind) => {
      if (this.video !== video) return true;
      if (this.own[kind] > 0 && performance.now() - this.own.at < OWN_EVENT_TTL_MS) {
        this.own[kind] -= 1;
        return true;
      }
      this.own[kind] = 0;
      return false;
    };
    video.addEventListener('play', () => { if (!mine('play')) this._userPlay(); });
    video.addEventListener('pause', () => { if (!mine('pause')) this._userPause(); });
    video.addEventListener('seeking', () => { if (!mine('seek')) this._userSeek(); });
    video.addEventListener('ended', () => this._ended());
    for (const type of ['loadedmetadata', 'canplay', 'seeked']) video.addEventListener(type, () => this.apply());
    return video;
  }

  _mark(kind) {
    this.own[kind] += 1;
    this.own.at = performance.now();
  }

  _play(rate) {
    const v = this.video;
    if (Math.abs(v.playbackRate - rate) > 1e-6) v.playbackRate = rate;
    if (!v.paused) return;
    this._mark('play');
    v.play().catch((err) => {
      if (err?.name === 'NotAllowedError') this._notice('Click the video once so ShareTube may play it.');
    });
  }

  _pause() {
    const v = this.video;
    if (v.paused) return;
    this._mark('pause');
    v.pause();
  }

  _seek(ms) {
    this._mark('seek');
    this.video.currentTime = Math.max(0, ms) / 1000;
    this.settleUntil = performance.now() + SETTLE_MS;
  }

  // --- following the room ---------------------------------------------------------------

  /** Bring the video in line with the room; runs on every push and every tick. */
  apply() {
    const video = this._bind();
    const pb = this.playback;
    if (!video || !pb || !this.view?.player || this.adShowing || this.inflight > 0) return;
    if (pb.status === 'idle' || !pb.video_id) return;
    if (!this._onRoomVideo(pb)) return;
    if (video.readyState < 1) return; // no metadata yet: loadedmetadata calls apply again
    switch (pb.status) {
      case 'starting':
        this._hold(pb.position_ms);
        this._maybeReady(pb);
        return;
      case 'playing':
        this._follow(pb);
        return;
      case 'paused':
      case 'midroll':
        this._cancelStart();
        this._hold(pb.position_ms);
        return;
      default:
    }
  }

  /**
   * Is the page showing the room's video? A new entry in the room opens it; a user who then
   * browses elsewhere is left alone (away) until the room moves to another entry.
   */
  _onRoomVideo(pb) {
    const here = this._pageVideoId();
    const followed = sessionStorage.getItem('sharetube.followed');
    if (here === pb.video_id) {
      if (followed !== pb.entry_id) sessionStorage.setItem('sharetube.followed', pb.entry_id);
      this.away = false;
      return true;
    }
    if (followed !== pb.entry_id) {
      sessionStorage.setItem('sharetube.followed', pb.entry_id);
      this._navigate(pb.video_id);
    } else {
      this.away = true;
    }
    return false;
  }

  _hold(positionMs) {
    const v = this.video;
    if (this.holdSince === 0) this.holdSince = performance.now();
    this._pause();
    if (!v.seeking && Math.abs(v.currentTime * 1000 - positionMs) > HOLD_TOLERANCE_MS) this._seek(positionMs);
  }

  _maybeReady(pb) {
    const v = this.video;
    const key = `${pb.entry_id}@${this.view.state.versions?.playback ?? ''}`;
    if (this.readyKey === key || v.seeking) return;
    if (this.holdKey !== key) {
      this.holdKey = key; // a new start: the fallback below counts from now
      this.holdSince = performance.now();
    }
    if (Math.abs(v.currentTime * 1000 - pb.position_ms) > HOLD_TOLERANCE_MS) return;
    const waited = performance.now() - this.holdSince;
    if (v.readyState < 3 && !(v.readyState >= 2 && waited > READY_FALLBACK_MS)) return;
    this.readyKey = key;
    this._send('ready', { entry_id: pb.entry_id }).catch(() => {
      if (this.readyKey === key) this.readyKey = null; // try again on the next tick
    });
  }

  _follow(pb) {
    const v = this.video;
    const rate = pb.rate || 1;
    const now = this.serverNow();
    if (now < pb.anchor_ms && this.startedFor !== pb.anchor_ms) {
      this._hold(pb.position_ms);
      this._scheduleStart(pb.anchor_ms, rate);
      return;
    }
    this.holdSince = 0;
    if (v.ended) return; // the room moves on by itself (`ended` was sent)
    const expected = expectedPositionMs(pb, now);
    if (v.paused) {
      // Late (joined mid-video, the event came after the anchor, back from an ad): a start
      // of our own, LATE_START_MS ahead at where the room will be then, as precise as the
      // room's own; play() right away from a seek would start as late as the seek is slow.
      if (this.start) return; // a start is scheduled
      const at = now + LATE_START_MS;
      this._seek(expectedPositionMs(pb, at));
      this._scheduleStart(pb.anchor_ms, rate, at);
      return;
    }
    if (v.seeking || performance.now() < this.settleUntil) return;
    const raw = v.currentTime * 1000 - expected;
    this.lastDriftMs = raw;
    this._onDrift(raw);
    this.recentDrift.push(raw);
    if (this.recentDrift.length > DRIFT_WINDOW) this.recentDrift.shift();
    const drift = median(this.recentDrift);
    const fix = driftCorrection({
      expectedMs: expected,
      actualMs: expected + drift,
      rate,
      thresholds: this.correcting ? { deadBandMs: SETTLED_MS, seekMs: RESYNC_MS } : { seekMs: RESYNC_MS },
    });
    this.correcting = fix.action === 'nudge';
    if (fix.action === 'seek') {
      // Far off (a stall, a slow machine): stop and start again on a schedule, like a late
      // player, which lands within a few ms; a plain seek lands as late as it is slow.
      this.recentDrift = [];
      v.playbackRate = rate;
      this._pause();
      this._follow(pb);
    } else if (fix.action === 'none' ? v.playbackRate !== rate : Math.abs(v.playbackRate - fix.playbackRate) >= RATE_STEP * rate) {
      v.playbackRate = fix.action === 'none' ? rate : fix.playbackRate;
    }
  }


  /**
   * Call play() at server time `atMs` (the room's anchor, or a late player's own start), if
   * the room is still in the start that has `anchorMs`.
   */
  _scheduleStart(anchorMs, rate, atMs = anchorMs) {
    if (this.start?.anchor === anchorMs) return;
    this._cancelStart();
    const start = { anchor: anchorMs, timer: null };
    this.start = start;
    const fire = () => {
      if (this.start !== start) return;
      const left = atMs - this.serverNow();
      if (left > SPIN_MS) {
        start.timer = setTimeout(fire, Math.max(0, left - SPIN_MS));
        return;
      }
      const until = performance.now() + left;
      while (performance.now() < until) {
        // spin: see SPIN_MS
      }
      this.start = null;
      if (this.playback?.status !== 'playing' || this.playback.anchor_ms !== anchorMs) return;
      // Still seeking, or no frame to show: play() would start whenever that ends. Leave it
      // to the next tick, which schedules a new start (the late path in _follow).
      if (this.video.seeking || this.video.readyState < 2) return;
      this.startedFor = anchorMs;
      this.holdSince = 0;
      this._play(rate);
      this.settleUntil = performance.now() + SETTLE_MS;
      this.recentDrift = [];
      this.correcting = false;
    };
    fire();
  }

  _cancelStart() {
    if (this.start) clearTimeout(this.start.timer);
    this.start = null;
  }

  // --- the user's own actions -------------------------------------------------------------

  _inControl() {
    const pb = this.playback;
    // A hidden tab's media is paused by the browser (background media suspend), not the user.
    if (document.visibilityState === 'hidden') return false;
    return Boolean(this.video && pb && this.view?.player && !this.adShowing && !this.away
      && pb.status !== 'idle' && this._pageVideoId() === pb.video_id);
  }

  _command(type, data) {
    if (!this.view.canControl) {
      this._notice('The room\'s owner controls playback here.');
      this.apply(); // snap back
      return;
    }
    this.inflight += 1;
    this._send(type, data)
      .catch((err) => this._notice(err.code === 'forbidden' ? 'The room\'s owner controls playback here.' : `${type} failed: ${err.message}`))
      .finally(() => {
        this.inflight -= 1;
        this.apply();
      });
  }

  _userPlay() {
    if (!this._inControl()) return;
    const { status } = this.playback;
    if (status === 'paused') this._command('play');
    else this.apply(); // starting / midroll hold; playing is already right
  }

  _userPause() {
    if (!this._inControl() || this.video.ended) return;
    const { status } = this.playback;
    if (status === 'playing' || status === 'starting') this._command('pause');
  }

  _userSeek() {
    if (!this._inControl()) return;
    const pb = this.playback;
    const at = this.video.currentTime * 1000;
    const roomAt = pb.status === 'playing' ? expectedPositionMs(pb, this.serverNow()) : pb.position_ms;
    if (Math.abs(at - roomAt) < USER_SEEK_MS) return;
    this._command('seek', { position_ms: Math.round(at) });
  }

  _ended() {
    const pb = this.playback;
    if (!this._inControl() || pb.status !== 'playing') return;
    // Any member may report an end; rooms ignores it unless that entry is still playing.
    this._send('ended', { entry_id: pb.entry_id }).catch(() => {});
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
