/**
 * Reports the rooms service may not understand yet: ad start / end (ad sync, DESIGN.md
 * "Ads") and measured drift samples (exported by the gateway as a histogram).
 *
 * Kept apart on purpose: the commands' names and data live only here. Each kind is tried; a
 * server that answers `unknown_type` has no such command, and that kind is not sent again on
 * this connection (a reconnect, maybe to an upgraded gateway, tries again).
 */

export const AD_START = 'ad.start';
export const AD_END = 'ad.end';
export const DRIFT_REPORT = 'drift.report';

/** Drift samples sent per report at most; the content script sends a batch every few seconds. */
const DRIFT_BATCH_MAX = 50;

export class Reports {
  /**
   * @param {(type: string, data: object) => Promise<any>} send a room command
   * @param {() => string|null} currentEntry the entry the room is on, to tie an ad to it
   */
  constructor(send, currentEntry) {
    this._send = send;
    this._currentEntry = currentEntry;
    this.reset();
  }

  /** Forget what the last server supported (called on every new connection). */
  reset() {
    /** null: not tried yet; true / false: the server knows the command or not */
    this.supported = { ad: null, drift: null };
    this.adShowing = false;
    this._adEntry = null;
    this.lastError = { ad: null, drift: null };
    this.sent = { ad: 0, drift: 0 };
  }

  status() {
    return {
      supported: { ...this.supported },
      adShowing: this.adShowing,
      lastError: { ...this.lastError },
      sent: { ...this.sent },
    };
  }

  /** The player tab saw YouTube's ad state change. */
  async ad(showing) {
    if (showing === this.adShowing) return this.status();
    this.adShowing = showing;
    // An end for a start the server never accepted would only confuse it.
    if (!showing && this.supported.ad !== true) return this.status();
    // entry_id ties the ad to the entry it interrupted (a late report changes nothing); the
    // end names the same entry as its start.
    if (showing) this._adEntry = this._currentEntry();
    const entryId = this._adEntry;
    await this._try('ad', showing ? AD_START : AD_END, entryId ? { entry_id: entryId } : {});
    return this.status();
  }

  /**
   * One report per batch: the batch's median drift (player minus expected, ms), so the
   * gateway's histogram counts each player's typical drift every few seconds, not its noise.
   * @param {number[]} samplesMs measured drift samples, ms
   */
  async drift(samplesMs, rate = null) {
    const samples = samplesMs.filter(Number.isFinite).slice(-DRIFT_BATCH_MAX).sort((a, b) => a - b);
    if (!samples.length) return this.status();
    const median = samples[Math.floor(samples.length / 2)];
    const data = { drift_ms: Math.round(median * 10) / 10 };
    if (Number.isFinite(rate)) data.rate = rate;
    await this._try('drift', DRIFT_REPORT, data);
    return this.status();
  }

  async _try(kind, type, data) {
    if (this.supported[kind] === false) return;
    try {
      await this._send(type, data);
      this.supported[kind] = true;
      this.sent[kind] += 1;
      this.lastError[kind] = null;
    } catch (err) {
      this.lastError[kind] = err.code ?? 'internal';
      if (err.code === 'unknown_type') this.supported[kind] = false;
    }
  }
}
