import { test } from 'node:test';
import assert from 'node:assert/strict';
import { driftCorrection, DRIFT_DEFAULTS } from '../sharetube-client.js';

const near = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} ≉ ${b}`);

test('dead band: within 15 ms nothing changes, rate stays the room rate', () => {
  for (const drift of [0, 15, -15, 7]) {
    const r = driftCorrection({ expectedMs: 10_000, actualMs: 10_000 + drift, rate: 1.25 });
    assert.deepEqual(r, { action: 'none', playbackRate: 1.25, seekToMs: null, driftMs: drift });
  }
});

test('nudge: ahead slows down, behind speeds up, proportional to the drift', () => {
  const ahead = driftCorrection({ expectedMs: 10_000, actualMs: 10_040 });
  assert.equal(ahead.action, 'nudge');
  near(ahead.playbackRate, 1 - 40 / 2000); // 0.98: 40 ms closed in 2 s
  assert.equal(ahead.seekToMs, null);
  const behind = driftCorrection({ expectedMs: 10_000, actualMs: 9_980 });
  near(behind.playbackRate, 1.01);
  const small = driftCorrection({ expectedMs: 10_000, actualMs: 10_016 });
  assert.equal(small.action, 'nudge');
  near(small.playbackRate, 0.992);
});

test('nudge is clamped to ±5 %', () => {
  near(driftCorrection({ expectedMs: 0, actualMs: 999 }).playbackRate, 0.95);
  near(driftCorrection({ expectedMs: 5000, actualMs: 4001 }).playbackRate, 1.05);
});

test('nudge scales with the room rate', () => {
  // At rate 1.5 the player covers 1.5x the media per wall ms, so the same drift needs less.
  const r = driftCorrection({ expectedMs: 10_000, actualMs: 10_030, rate: 1.5 });
  near(r.playbackRate, 1.5 * (1 - 30 / 3000));
  near(driftCorrection({ expectedMs: 0, actualMs: 900, rate: 1.5 }).playbackRate, 1.5 * 0.95);
});

test('seek: at 1 s and beyond, to the expected position plus the lead', () => {
  assert.deepEqual(driftCorrection({ expectedMs: 10_000, actualMs: 11_000 }),
    { action: 'seek', playbackRate: 1, seekToMs: 10_000, driftMs: 1000 });
  const r = driftCorrection({ expectedMs: 10_000, actualMs: 2_000, rate: 1.5, thresholds: { seekLeadMs: 120 } });
  assert.deepEqual(r, { action: 'seek', playbackRate: 1.5, seekToMs: 10_120, driftMs: -8000 });
  assert.equal(driftCorrection({ expectedMs: 10_000, actualMs: 10_999 }).action, 'nudge');
});

test('thresholds can be overridden one by one', () => {
  const t = { deadBandMs: 100 };
  assert.equal(driftCorrection({ expectedMs: 0, actualMs: 80, thresholds: t }).action, 'none');
  assert.equal(driftCorrection({ expectedMs: 0, actualMs: 400, thresholds: { seekMs: 300 } }).action, 'seek');
  assert.equal(DRIFT_DEFAULTS.deadBandMs, 15);
  assert.ok(Object.isFrozen(DRIFT_DEFAULTS));
});
