import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { applySnapshot, applyEvent, expectedPositionMs, CHAT_KEEP } from '../sharetube-client.js';

function deepFreeze(x) {
  if (x && typeof x === 'object') {
    Object.freeze(x);
    for (const v of Object.values(x)) deepFreeze(v);
  }
  return x;
}

const playback = (over = {}) => ({
  status: 'playing', entry_id: 'e1', video_id: 'dQw4w9WgXcQ', position_ms: 0, anchor_ms: 5000, rate: 1, ...over,
});

const snapshot = (over = {}) => ({
  room: { code: 'AbC123', name: 'Movie night' },
  settings: { control_mode: 'any' },
  members: [{ id: 'u1', name: 'Ann' }],
  queue: [{ id: 'e1', video_id: 'dQw4w9WgXcQ' }],
  playback: playback(),
  chat: [{ id: 'm1', text: 'hi' }],
  versions: { playback: 8, members: 10, settings: 2, queue: 7, chat: 9 },
  v: 10,
  ...over,
});

/** What a fresh snapshot and snapshot+events must agree on. */
const comparable = ({ lastEventV, ...rest }) => rest;

describe('applySnapshot', () => {
  test('copies parts, keeps versions, lastEventV starts null', () => {
    const s = applySnapshot(deepFreeze(snapshot()));
    assert.equal(s.lastEventV, null);
    assert.equal(s.v, 10);
    assert.deepEqual(s.versions, { playback: 8, members: 10, settings: 2, queue: 7, chat: 9 });
    assert.equal(s.room.code, 'AbC123');
  });

  test('without versions every part counts as changed at v', () => {
    const s = applySnapshot(snapshot({ versions: undefined, v: 4 }));
    assert.deepEqual(s.versions, { playback: 4, members: 4, settings: 4, queue: 4, chat: 4 });
  });

  test(`keeps only the last ${CHAT_KEEP} chat messages`, () => {
    const chat = Array.from({ length: 250 }, (_, i) => ({ id: `m${i}` }));
    const s = applySnapshot(snapshot({ chat }));
    assert.equal(s.chat.length, CHAT_KEEP);
    assert.equal(s.chat.at(-1).id, 'm249');
  });
});

describe('applyEvent', () => {
  test('applies events in order and records part versions', () => {
    let s = applySnapshot(snapshot());
    let r = applyEvent(s, { type: 'playback', room: 'AbC123', v: 11, data: playback({ status: 'paused', position_ms: 900 }) });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    s = r.state;
    r = applyEvent(s, { type: 'queue', room: 'AbC123', v: 12, data: [] });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    s = r.state;
    assert.equal(s.playback.status, 'paused');
    assert.deepEqual(s.queue, []);
    assert.equal(s.versions.playback, 11);
    assert.equal(s.versions.queue, 12);
    assert.equal(s.v, 12);
    assert.equal(s.lastEventV, 12);
  });

  test('ignores events at or below the part version, and they are not a gap', () => {
    const s = applySnapshot(snapshot());
    for (const ev of [
      { type: 'playback', v: 8, data: playback({ status: 'idle' }) },
      { type: 'playback', v: 5, data: playback({ status: 'idle' }) },
      { type: 'members', v: 10, data: [] },
    ]) {
      const r = applyEvent(s, ev);
      assert.equal(r.state, s);
      assert.deepEqual([r.applied, r.gap], [false, false]);
    }
    // A part that changed earlier than the room's v still takes a newer event below v.
    const r = applyEvent(s, { type: 'settings', v: 3, data: { control_mode: 'owner_only' } });
    assert.equal(r.applied, true);
    assert.equal(r.state.settings.control_mode, 'owner_only');
  });

  test('first event after a snapshot is never a gap; a skipped v afterwards is', () => {
    let r = applyEvent(applySnapshot(snapshot()), { type: 'members', v: 15, data: [] });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    r = applyEvent(r.state, { type: 'queue', v: 17, data: [] });
    assert.deepEqual([r.applied, r.gap], [true, true]);
    assert.equal(r.state.lastEventV, 17);
    r = applyEvent(r.state, { type: 'chat', v: 18, data: { id: 'm2' } });
    assert.deepEqual([r.applied, r.gap], [true, false]);
  });

  test('a late event does not move lastEventV backwards', () => {
    let r = applyEvent(applySnapshot(snapshot()), { type: 'members', v: 12, data: [] });
    r = applyEvent(r.state, { type: 'playback', v: 11, data: playback() });
    assert.equal(r.applied, true);
    assert.equal(r.gap, true);
    assert.equal(r.state.lastEventV, 12);
  });

  test('chat appends one message and keeps the last 200', () => {
    const chat = Array.from({ length: CHAT_KEEP }, (_, i) => ({ id: `m${i}` }));
    const r = applyEvent(applySnapshot(snapshot({ chat })), { type: 'chat', v: 11, data: { id: 'new', text: 'yo' } });
    assert.equal(r.state.chat.length, CHAT_KEEP);
    assert.equal(r.state.chat[0].id, 'm1');
    assert.deepEqual(r.state.chat.at(-1), { id: 'new', text: 'yo' });
  });

  test('a chat deletion drops that message wherever it is, and only that one', () => {
    const chat = [{ id: 'm1', text: 'a' }, { id: 'm2', text: 'b' }, { id: 'm3', text: 'c' }];
    let r = applyEvent(applySnapshot(snapshot({ chat })), { type: 'chat', v: 11, data: { deleted: 'm2' } });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    assert.deepEqual(r.state.chat.map((m) => m.id), ['m1', 'm3']);
    assert.equal(r.state.versions.chat, 11);
    // Deleting one this client never held (older than its window) changes no message.
    r = applyEvent(r.state, { type: 'chat', v: 12, data: { deleted: 'm0' } });
    assert.deepEqual(r.state.chat.map((m) => m.id), ['m1', 'm3']);
    assert.equal(r.state.versions.chat, 12);
    // A replayed deletion is an old event: ignored.
    assert.equal(applyEvent(r.state, { type: 'chat', v: 11, data: { deleted: 'm1' } }).applied, false);
    // A message whose text happens to be called "deleted" is still a message.
    r = applyEvent(r.state, { type: 'chat', v: 13, data: { id: 'm4', text: 'x', deleted: 'm1' } });
    assert.deepEqual(r.state.chat.map((m) => m.id), ['m1', 'm3', 'm4']);
  });

  test('queue and members accept a wrapped list', () => {
    let r = applyEvent(applySnapshot(snapshot()), { type: 'queue', v: 11, data: { entries: [{ id: 'e9' }] } });
    r = applyEvent(r.state, { type: 'members', v: 12, data: { members: [{ id: 'u9' }] } });
    assert.deepEqual(r.state.queue, [{ id: 'e9' }]);
    assert.deepEqual(r.state.members, [{ id: 'u9' }]);
  });

  test('unknown types and malformed events are ignored, never thrown', () => {
    const s = applySnapshot(snapshot());
    for (const ev of [null, undefined, {}, { type: 'playback' }, { type: 'playback', v: '12' }, { type: 'presence', v: 5 }]) {
      const r = applyEvent(s, ev);
      assert.equal(r.state, s);
      assert.deepEqual([r.applied, r.gap], [false, false]);
    }
    // A newer unknown event changes no part but keeps the gap baseline in step.
    let r = applyEvent(s, { type: 'members', v: 11, data: [] });
    r = applyEvent(r.state, { type: 'ad.state', v: 12, data: { ad: true } });
    assert.deepEqual([r.applied, r.gap], [false, false]);
    assert.equal(r.state.ad, undefined);
    r = applyEvent(r.state, { type: 'chat', v: 13, data: { id: 'm2' } });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    assert.equal(applyEvent(undefined, { type: 'chat', v: 1 }).applied, false);
  });

  test('never mutates its input', () => {
    const s = deepFreeze(applySnapshot(deepFreeze(snapshot())));
    const before = structuredClone(s);
    const events = [
      { type: 'playback', v: 11, data: playback({ status: 'paused' }) },
      { type: 'chat', v: 12, data: { id: 'm2' } },
      { type: 'settings', v: 13, data: { control_mode: 'operators' } },
    ];
    let cur = s;
    for (const ev of events) cur = applyEvent(cur, ev).state;
    assert.deepEqual(s, before);
    assert.notEqual(cur, s);
  });

  test('snapshot + events equals a fresh snapshot', () => {
    const old = snapshot();
    const events = [
      { type: 'playback', v: 11, data: playback({ status: 'paused', position_ms: 1234, anchor_ms: 6000 }) },
      { type: 'chat', v: 12, data: { id: 'm2', text: 'pause pls' } },
      { type: 'queue', v: 13, data: [{ id: 'e1' }, { id: 'e2' }] },
      { type: 'members', v: 14, data: [{ id: 'u1' }, { id: 'u2' }] },
    ];
    const fresh = snapshot({
      playback: events[0].data,
      chat: [...old.chat, events[1].data],
      queue: events[2].data,
      members: events[3].data,
      versions: { playback: 11, members: 14, settings: 2, queue: 13, chat: 12 },
      v: 14,
    });
    let s = applySnapshot(old);
    for (const ev of events) s = applyEvent(s, ev).state;
    assert.deepEqual(comparable(s), comparable(applySnapshot(fresh)));
  });
});

describe('expectedPositionMs', () => {
  test('idle is 0', () => {
    assert.equal(expectedPositionMs(playback({ status: 'idle', position_ms: 4000 }), 9000), 0);
    assert.equal(expectedPositionMs(null, 9000), 0);
  });

  for (const status of ['paused', 'starting', 'midroll']) {
    test(`${status} holds position_ms`, () => {
      assert.equal(expectedPositionMs(playback({ status, position_ms: 4000, anchor_ms: 1000 }), 9000), 4000);
    });
  }

  test('playing advances from the anchor at rate 1', () => {
    assert.equal(expectedPositionMs(playback({ position_ms: 4000, anchor_ms: 5000 }), 7500), 6500);
  });

  test('playing at rate 1.5', () => {
    assert.equal(expectedPositionMs(playback({ position_ms: 4000, anchor_ms: 5000, rate: 1.5 }), 7000), 7000);
  });

  test('a future anchor holds position_ms until the shared start', () => {
    const p = playback({ position_ms: 30_000, anchor_ms: 10_000, rate: 1.5 });
    assert.equal(expectedPositionMs(p, 9_000), 30_000);
    assert.equal(expectedPositionMs(p, 10_000), 30_000);
    assert.equal(expectedPositionMs(p, 10_100), 30_150);
  });

  test('never negative, never past duration_ms', () => {
    assert.equal(expectedPositionMs(playback({ status: 'paused', position_ms: -50 }), 0), 0);
    assert.equal(expectedPositionMs(playback({ position_ms: 0, anchor_ms: 0, duration_ms: 60_000 }), 90_000), 60_000);
  });

  test('missing rate means 1, missing anchor holds', () => {
    assert.equal(expectedPositionMs({ status: 'playing', position_ms: 100, anchor_ms: 0 }, 50), 150);
    assert.equal(expectedPositionMs({ status: 'playing', position_ms: 100, anchor_ms: null }, 50), 100);
  });
});
