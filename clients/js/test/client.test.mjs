import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShareTubeClient, ShareTubeError } from '../sharetube-client.js';
import { connectedClient, FakeClock, flush } from './fakes.mjs';

const ROOM = 'AbC123';

const snapshot = (over = {}) => ({
  room: { code: ROOM, name: 'Movie night' },
  settings: { control_mode: 'any' },
  members: [{ id: 'u1', name: 'Ann' }],
  queue: [],
  playback: { status: 'paused', entry_id: null, video_id: null, position_ms: 0, anchor_ms: 0, rate: 1 },
  chat: [],
  versions: { playback: 3, members: 5, settings: 1, queue: 2, chat: 4 },
  v: 5,
  ...over,
});

const playbackEvent = (v, over = {}) => ({
  type: 'playback', room: ROOM, v,
  data: { status: 'playing', entry_id: 'e1', video_id: 'dQw4w9WgXcQ', position_ms: 0, anchor_ms: 100, rate: 1, ...over },
});

/** Frames of one type the client sent. */
const sentOf = (socket, type) => socket.sent.filter((f) => f.type === type);

test('connect opens url?token= with the token encoded, emits open', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, { connect: false });
  const opened = [];
  client.on('open', (p) => opened.push(p));
  await client.connect();
  assert.equal(socket().url, 'ws://127.0.0.1:8000/ws?token=tok%20en%2F%2B');
  assert.deepEqual(opened, [{ url: 'ws://127.0.0.1:8000/ws' }]);
  assert.equal(client.connected, true);
  assert.equal(client.connect(), client.connect(), 'connect while open is a no-op');
});

test('connect without any WebSocket implementation rejects clearly', async () => {
  const client = new ShareTubeClient({ url: 'ws://x/ws', token: 't', WebSocketImpl: undefined });
  await assert.rejects(client.connect(), /WebSocketImpl/);
});

test('request frames are {id, type, room?, data}; replies correlate by id, in any order', async () => {
  const held = [];
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { 'queue.add': (f) => held.push(f), 'chat.history': (f) => held.push(f) },
  });
  const a = client.request('queue.add', { video_id: 'a' }, { room: ROOM });
  const b = client.request('queue.add', { video_id: 'b' }, { room: ROOM });
  const c = client.request('chat.history');
  assert.equal(held.length, 3);
  assert.deepEqual(Object.keys(held[0]), ['id', 'type', 'room', 'data']);
  assert.deepEqual(Object.keys(held[2]), ['id', 'type', 'data']);
  assert.deepEqual(held[2].data, {});
  const s = socket();
  s.reply(held[2], { which: 'c' });
  s.reply(held[0], { which: 'a' });
  s.reply(held[1], { which: 'b' });
  assert.deepEqual(await Promise.all([a, b, c]), [{ which: 'a' }, { which: 'b' }, { which: 'c' }]);
});

test('an error reply rejects with its code and message', async () => {
  const { client } = await connectedClient(ShareTubeClient, {
    handlers: { seek: (f, s) => s.receive({ re: f.id, ok: false, error: { code: 'forbidden', message: 'owner only', role: 'member' } }) },
  });
  const err = await client.seek(5000, { room: ROOM }).catch((e) => e);
  assert.ok(err instanceof ShareTubeError);
  assert.ok(err instanceof Error);
  assert.equal(err.code, 'forbidden');
  assert.equal(err.message, 'owner only');
  assert.deepEqual(err.details, { role: 'member' });
});

test('no reply within timeoutMs rejects with code timeout; a late reply is ignored', async () => {
  const held = [];
  const { client, clock, socket } = await connectedClient(ShareTubeClient, { handlers: { play: (f) => held.push(f) } });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const p = client.play({ room: ROOM, timeoutMs: 1500 });
  const outcome = p.catch((e) => e);
  clock.advance(1499);
  await flush();
  clock.advance(1);
  const err = await outcome;
  assert.equal(err.code, 'timeout');
  socket().reply(held[0], {});
  await flush();
  assert.deepEqual(errors, []);
  // The default is 5 s.
  const q = client.pause({ room: ROOM }).catch((e) => e);
  clock.advance(5000);
  assert.equal((await q).code, 'timeout');
});

test('socket close rejects every pending request with disconnected; nothing is re-sent', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient);
  const closes = [];
  client.on('close', (c) => closes.push(c));
  const pending = [client.skip({ room: ROOM }), client.chatSend('hi', { room: ROOM })].map((p) => p.catch((e) => e));
  const s = socket();
  s.drop(1006);
  for (const err of await Promise.all(pending)) assert.equal(err.code, 'disconnected');
  assert.deepEqual(closes, [{ code: 1006, reason: '', wasClean: false }]);
  assert.equal(client.connected, false);

  const sentBefore = s.sent.length;
  const err = await client.restart({ room: ROOM }).catch((e) => e);
  assert.equal(err.code, 'disconnected');
  assert.equal(s.sent.length, sentBefore);

  await client.connect();
  await flush();
  assert.deepEqual(sentOf(socket(), 'skip'), [], 'the new socket does not replay old commands');
});

test('disconnect() rejects pending requests at once and closes the socket', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient);
  const p = client.play({ room: ROOM }).catch((e) => e);
  client.disconnect();
  assert.equal((await p).code, 'disconnected');
  assert.equal(socket().readyState, 3);
});

test('ids are unique per instance and across instances: random prefix + counter', async () => {
  const a = await connectedClient(ShareTubeClient);
  const b = await connectedClient(ShareTubeClient);
  for (let i = 0; i < 20; i++) {
    a.client.request('chat.history').catch(() => {});
    b.client.request('chat.history').catch(() => {});
  }
  const ids = [...a.socket().sent, ...b.socket().sent].map((f) => f.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, /^[0-9a-z]{8}-\d+$/);
  const prefix = (env) => env.socket().sent[0].id.split('-')[0];
  assert.notEqual(prefix(a), prefix(b));
  a.client.disconnect();
  b.client.disconnect();
});

test('join sends {player}, applies the snapshot, then events update the store and are emitted', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()) },
  });
  const seen = [];
  for (const type of ['snapshot', 'state', 'playback', 'chat', 'queue', 'members', 'settings', 'gap']) {
    client.on(type, (p) => seen.push([type, p.cause ?? p.v ?? null]));
  }
  const state = await client.join(ROOM, { player: true });
  assert.deepEqual(sentOf(socket(), 'join')[0].data, { player: true });
  assert.equal(sentOf(socket(), 'join')[0].room, ROOM);
  assert.equal(state.v, 5);
  assert.equal(client.room, ROOM);
  assert.equal(client.getState(), state);

  const s = socket();
  s.receiveNow(playbackEvent(6));
  s.receiveNow({ type: 'chat', room: ROOM, v: 7, data: { id: 'm1', text: 'hi' } });
  s.receiveNow({ type: 'settings', room: ROOM, v: 8, data: { control_mode: 'owner_only' } });
  s.receiveNow({ type: 'members', room: ROOM, v: 5, data: [] }); // old: ignored
  s.receiveNow({ type: 'playback', room: 'Other1', v: 99, data: {} }); // not joined: ignored
  assert.deepEqual(seen, [
    ['snapshot', null], ['state', 'snapshot'],
    ['playback', 6], ['state', 'playback'],
    ['chat', 7], ['state', 'chat'],
    ['settings', 8], ['state', 'settings'],
  ]);
  const now = client.getState();
  assert.equal(now.playback.status, 'playing');
  assert.equal(now.chat.length, 1);
  assert.equal(now.members.length, 1);
  assert.equal(client.getState('Other1'), undefined);
});

test('a version gap emits gap, sends room.sync and applies its snapshot', async () => {
  let syncReply = null;
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: {
      join: (f, s) => s.reply(f, snapshot()),
      'room.sync': (f) => { syncReply = f; },
    },
  });
  await client.join(ROOM);
  const gaps = [];
  const snaps = [];
  client.on('gap', (g) => gaps.push(g));
  client.on('snapshot', (p) => snaps.push(p));
  const s = socket();
  s.receiveNow(playbackEvent(6));
  s.receiveNow({ type: 'queue', room: ROOM, v: 9, data: [{ id: 'e1' }] }); // 7 and 8 missed
  assert.deepEqual(gaps, [{ room: ROOM, v: 9, lastEventV: 6 }]);
  assert.equal(sentOf(s, 'room.sync').length, 1);
  assert.equal(sentOf(s, 'room.sync')[0].room, ROOM);

  // Events during the sync wait for the snapshot, then replay on top of it.
  s.receiveNow({ type: 'chat', room: ROOM, v: 10, data: { id: 'm-late' } });
  s.receiveNow({ type: 'queue', room: ROOM, v: 12, data: [] }); // another gap: no second sync
  assert.equal(sentOf(s, 'room.sync').length, 1);

  const fresh = snapshot({
    members: [{ id: 'u1' }, { id: 'u2' }],
    queue: [{ id: 'e1' }],
    chat: [{ id: 'm-missed' }],
    versions: { playback: 6, members: 7, settings: 1, queue: 9, chat: 8 },
    v: 9,
  });
  s.reply(syncReply, fresh);
  await flush();
  assert.equal(snaps.length, 1);
  const state = client.getState();
  assert.deepEqual(state.members, fresh.members);
  assert.deepEqual(state.chat.map((m) => m.id), ['m-missed', 'm-late']);
  assert.deepEqual(state.queue, []);
  assert.equal(state.v, 12);
  // 10 then 12 after the snapshot: the replayed 12 is itself a gap, so one more sync goes out.
  assert.equal(sentOf(s, 'room.sync').length, 2);
});

test('events that race ahead of the join reply are replayed on the snapshot', async () => {
  let joinFrame = null;
  const { client, socket } = await connectedClient(ShareTubeClient, { handlers: { join: (f) => { joinFrame = f; } } });
  const joined = client.join(ROOM);
  const s = socket();
  s.receiveNow(playbackEvent(5, { status: 'idle' })); // already in the snapshot
  s.receiveNow(playbackEvent(6, { position_ms: 777 }));
  s.reply(joinFrame, snapshot());
  const state = await joined;
  assert.equal(state.playback.position_ms, 777);
  assert.equal(state.versions.playback, 6);
  assert.equal(sentOf(s, 'room.sync').length, 0);
});

test('a refused join rejects and leaves no room behind', async () => {
  const { client } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.fail(f, 'not_found', 'no such room') },
  });
  const err = await client.join('Nope00').catch((e) => e);
  assert.equal(err.code, 'not_found');
  assert.equal(client.getState('Nope00'), undefined);
  assert.equal(client.room, null);
});

test('leave drops the room at once; its events are ignored', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()), leave: (f, s) => s.reply(f, {}) },
  });
  await client.join(ROOM);
  const states = [];
  client.on('state', (p) => states.push(p));
  await client.leave();
  socket().receiveNow(playbackEvent(6));
  await assert.rejects(client.leave(), (e) => e.code === 'not_joined');
  assert.equal(client.getState(ROOM), undefined);
  assert.equal(client.room, null);
  assert.deepEqual(states, []);
});

test('reconnect re-joins every joined room with its options', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()) },
  });
  await client.join(ROOM, { player: true });
  socket().drop();
  await client.connect();
  await flush();
  const rejoin = sentOf(socket(), 'join');
  assert.equal(rejoin.length, 1);
  assert.deepEqual([rejoin[0].room, rejoin[0].data], [ROOM, { player: true }]);
  assert.equal(client.getState().v, 5);
});

test('convenience commands send the wire shapes to the current room', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: new Proxy({}, { get: (_, type) => (type === 'time.ping' ? undefined : (f, s) => s.reply(f, type === 'join' ? snapshot() : {})) }),
  });
  await assert.rejects(client.play(), (e) => e.code === 'not_joined');
  await client.join(ROOM);
  await client.play();
  await client.pause();
  await client.seek(1234.6);
  await client.seek(-5);
  await client.skip();
  await client.restart();
  await client.ready('e7');
  await client.queueAdd('dQw4w9WgXcQ');
  await client.queueAdd('https://www.youtube.com/watch?v=dQw4w9WgXcQ');
  await client.queueAdd({ video_id: 'x', title: 'T', duration_ms: 1000 });
  await client.chatSend('hello');
  await client.chatHistory({ before_id: 'm9', limit: 20 });
  await client.chatDelete('m3');
  await client.createRoom({ name: 'R' });
  const frames = socket().sent.filter((f) => !['time.ping', 'join'].includes(f.type)).map((f) => [f.type, f.room, f.data]);
  assert.deepEqual(frames, [
    ['play', ROOM, {}],
    ['pause', ROOM, {}],
    ['seek', ROOM, { position_ms: 1235 }],
    ['seek', ROOM, { position_ms: 0 }],
    ['skip', ROOM, {}],
    ['restart', ROOM, {}],
    ['ready', ROOM, { entry_id: 'e7' }],
    ['queue.add', ROOM, { video_id: 'dQw4w9WgXcQ' }],
    ['queue.add', ROOM, { url: 'https://www.youtube.com/watch?v=dQw4w9WgXcQ' }],
    ['queue.add', ROOM, { video_id: 'x', title: 'T', duration_ms: 1000 }],
    ['chat.send', ROOM, { text: 'hello' }],
    ['chat.history', ROOM, { before_id: 'm9', limit: 20 }],
    ['chat.delete', ROOM, { message_id: 'm3' }],
    ['room.create', undefined, { name: 'R' }],
  ]);
});

test('on returns an unsubscribe, off removes, a throwing listener does not break the rest', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()) },
  });
  await client.join(ROOM);
  const got = [];
  const un = client.on('playback', (p) => got.push(['a', p.v]));
  const fb = (p) => got.push(['b', p.v]);
  client.on('playback', fb);
  socket().receiveNow(playbackEvent(6));
  un();
  client.off('playback', fb);
  socket().receiveNow(playbackEvent(7));
  assert.deepEqual(got, [['a', 6], ['b', 6]]);
});

test('unreadable frames and unknown event types are survived', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()) },
  });
  await client.join(ROOM);
  const errors = [];
  const raw = [];
  client.on('error', (e) => errors.push(e.error.code));
  client.on('event', (e) => raw.push(e.type));
  const s = socket();
  s.receiveNow('not json');
  s.receiveNow({ type: 'presence.ping', room: ROOM, v: 6, data: {} });
  s.receiveNow({ re: null, ok: false, error: { code: 'bad_frame', message: 'x' } });
  s.receiveNow(playbackEvent(7));
  assert.deepEqual(errors, ['bad_reply', 'bad_frame']);
  assert.deepEqual(raw, ['presence.ping', 'playback']);
  assert.equal(client.getState().versions.playback, 7);
  assert.equal(sentOf(s, 'room.sync').length, 0);
});

test('expectedPositionMs(room) uses the synced server clock', async () => {
  const clock = new FakeClock(10_000);
  const { client } = await connectedClient(ShareTubeClient, {
    clock,
    handlers: {
      'time.ping': (f, s) => s.reply(f, { t0: f.data.t0, server_ms: clock.now() + 2_000 }),
      join: (f, s) => s.reply(f, snapshot({ playback: { status: 'playing', position_ms: 1000, anchor_ms: 11_000, rate: 1 } })),
    },
  });
  await client.join(ROOM);
  assert.equal(client.serverNow(), 12_000);
  assert.equal(client.expectedPositionMs(), 2000);
});
