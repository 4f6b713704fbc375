import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ShareTubeClient, applyEvent, applySnapshot, evictionMessage,
} from '../sharetube-client.js';
import { connectedClient, flush } from './fakes.mjs';

const ROOM = 'AbC123';

const snapshot = () => ({
  room: { code: ROOM },
  settings: { control_mode: 'any' },
  members: [],
  queue: [],
  playback: { status: 'paused', entry_id: 'e1', video_id: 'dQw4w9WgXcQ', position_ms: 0, anchor_ms: 0, rate: 1 },
  chat: [],
  versions: { playback: 3, members: 5, settings: 1, queue: 2, chat: 4 },
  v: 5,
});

/** A client joined to ROOM whose fake server answers every command with `{}`. */
async function joined() {
  const ok = (f, s) => s.reply(f, {});
  const handlers = new Proxy({ join: (f, s) => s.reply(f, snapshot()) }, {
    get: (target, type) => target[type] ?? (type === 'time.ping' ? undefined : ok),
  });
  const setup = await connectedClient(ShareTubeClient, { handlers });
  await setup.client.join(ROOM, { player: true });
  return setup;
}

const last = (socket) => socket.sent.at(-1);

test('the policy and moderation commands send their wire frames to the current room', async () => {
  const { client, socket } = await joined();
  const cases = [
    [() => client.updateSettings({ vote_skip_ratio: 0.75, queue_limit_per_user: 3 }), 'room.settings', { vote_skip_ratio: 0.75, queue_limit_per_user: 3 }],
    [() => client.setRole('u2', 'operator'), 'room.role', { user_id: 'u2', role: 'operator' }],
    [() => client.transferOwnership('u2'), 'room.transfer', { user_id: 'u2' }],
    [() => client.kick('u2'), 'room.kick', { user_id: 'u2' }],
    [() => client.ban('u2'), 'room.ban', { user_id: 'u2', banned: true }],
    [() => client.unban('u2'), 'room.ban', { user_id: 'u2', banned: false }],
    [() => client.roomAudit({ limit: 10 }), 'room.audit', { limit: 10 }],
    [() => client.roomAudit(), 'room.audit', {}],
    [() => client.setRate(1.5), 'rate', { rate: 1.5 }],
    [() => client.voteSkip(), 'skip.vote', {}],
    [() => client.queueShuffle(), 'queue.shuffle', {}],
    [() => client.queueAddNext('dQw4w9WgXcQ'), 'queue.add', { video_id: 'dQw4w9WgXcQ', next: true }],
    [() => client.queueAddNext('https://youtu.be/dQw4w9WgXcQ'), 'queue.add', { url: 'https://youtu.be/dQw4w9WgXcQ', next: true }],
    [() => client.queueAddNext({ video_id: 'dQw4w9WgXcQ', title: 't' }), 'queue.add', { video_id: 'dQw4w9WgXcQ', title: 't', next: true }],
    [() => client.adStart('e1'), 'ad.start', { entry_id: 'e1' }],
    [() => client.adEnd(), 'ad.end', {}],
  ];
  for (const [send, type, data] of cases) {
    assert.deepEqual(await send(), {});
    const frame = last(socket());
    assert.deepEqual([frame.type, frame.room, frame.data], [type, ROOM, data], type);
  }
  await client.kick('u9', { room: 'Other1' });
  assert.equal(last(socket()).room, 'Other1');
});

test('without a room the commands reject with not_joined and send nothing', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient);
  const before = socket().sent.length;
  for (const send of [() => client.kick('u2'), () => client.voteSkip(), () => client.setRate(2)]) {
    const err = await send().catch((e) => e);
    assert.equal(err.code, 'not_joined');
  }
  assert.equal(socket().sent.length, before);
});

test('an evicted frame forgets the room: no more events, no re-join on reconnect', async () => {
  const { client, socket } = await joined();
  const evictions = [];
  client.on('evicted', (p) => evictions.push(p));
  socket().receive({ type: 'evicted', room: ROOM, data: { reason: 'banned' } });
  await flush();
  assert.deepEqual(evictions, [{ room: ROOM, reason: 'banned' }]);
  assert.equal(client.getState(ROOM), undefined);
  assert.equal(client.room, null);

  const seen = [];
  client.on('playback', (p) => seen.push(p));
  socket().receive({ type: 'playback', room: ROOM, v: 6, data: { status: 'playing' } });
  await flush();
  assert.deepEqual(seen, []);

  socket().drop();
  await client.connect();
  await flush();
  assert.deepEqual(socket().sent.filter((f) => f.type === 'join'), []);
});

test('a closed room evicts every socket in it, the closer\'s too: it is forgotten for good', async () => {
  const { client, socket } = await joined();
  const evictions = [];
  client.on('evicted', (p) => evictions.push(p));
  assert.deepEqual(await client.closeRoom(), {});
  assert.deepEqual([last(socket()).type, last(socket()).room], ['room.close', ROOM]);
  socket().receive({ type: 'evicted', room: ROOM, data: { reason: 'closed' } });
  await flush();
  assert.deepEqual(evictions, [{ room: ROOM, reason: 'closed' }]);
  assert.equal(client.getState(ROOM), undefined);
  assert.equal(client.room, null);
  assert.equal((await client.play().catch((e) => e)).code, 'not_joined');

  socket().drop();
  await client.connect();
  await flush();
  assert.deepEqual(socket().sent.filter((f) => f.type === 'join'), []);
});

test('evictionMessage says why in words', () => {
  assert.equal(evictionMessage(ROOM, 'closed'), `Room ${ROOM} was closed by its owner or an admin.`);
  assert.equal(evictionMessage(ROOM, 'kicked'), `You were removed from room ${ROOM} (kicked).`);
  assert.equal(evictionMessage(ROOM), `You were removed from room ${ROOM}.`);
});

test('an evicted frame for a room not joined is ignored', async () => {
  const { client, socket } = await joined();
  const evictions = [];
  client.on('evicted', (p) => evictions.push(p));
  socket().receive({ type: 'evicted', room: 'Other1', data: { reason: 'kicked' } });
  await flush();
  assert.deepEqual(evictions, []);
  assert.equal(client.room, ROOM);
});

test('playback rate and skip votes arrive in playback events like any other field', () => {
  const state = applySnapshot(snapshot());
  const { state: next, applied } = applyEvent(state, {
    type: 'playback', room: ROOM, v: 6,
    data: { status: 'playing', entry_id: 'e1', position_ms: 0, anchor_ms: 100, rate: 1.5, skip_votes: 2 },
  });
  assert.equal(applied, true);
  assert.equal(next.playback.rate, 1.5);
  assert.equal(next.playback.skip_votes, 2);
});
