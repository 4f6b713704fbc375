// The commands the portals (mobile remote, admin dashboard) send through the shared client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShareTubeClient } from '../sharetube-client.js';
import { connectedClient } from './fakes.mjs';

const ROOM = 'AbC123';

const snapshot = () => ({
  room: { code: ROOM },
  settings: { control_mode: 'any' },
  members: [],
  queue: [],
  playback: { status: 'idle', position_ms: 0, anchor_ms: 0, rate: 1 },
  chat: [],
  versions: { playback: 1, members: 1, settings: 1, queue: 1, chat: 1 },
  v: 1,
});

const last = (socket) => socket.sent.at(-1);

test('queueRemove and queueMove send their wire frames to the current room', async () => {
  const ok = (f, s) => s.reply(f, {});
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { join: (f, s) => s.reply(f, snapshot()), 'queue.remove': ok, 'queue.move': ok },
  });
  await client.join(ROOM);
  assert.deepEqual(await client.queueRemove('e1'), {});
  assert.deepEqual(
    [last(socket()).type, last(socket()).room, last(socket()).data],
    ['queue.remove', ROOM, { entry_id: 'e1' }],
  );
  await client.queueMove('e2', 2.4);
  assert.deepEqual([last(socket()).type, last(socket()).data], ['queue.move', { entry_id: 'e2', index: 2 }]);
  await client.queueMove('e2', -3, { room: 'Other1' });
  assert.deepEqual([last(socket()).room, last(socket()).data.index], ['Other1', 0]);
});

test('adminRooms needs no joined room and passes the query through', async () => {
  const overview = { rooms: [{ code: ROOM, members_online: 2, queue_length: 3 }], audit: [] };
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { 'admin.rooms': (f, s) => s.reply(f, overview) },
  });
  assert.deepEqual(await client.adminRooms({ limit: 20 }), overview);
  const frame = last(socket());
  assert.equal(frame.type, 'admin.rooms');
  assert.equal('room' in frame, false);
  assert.deepEqual(frame.data, { limit: 20 });
});

test('adminRooms rejects with the server code for a non-admin', async () => {
  const { client } = await connectedClient(ShareTubeClient, {
    handlers: { 'admin.rooms': (f, s) => s.fail(f, 'forbidden', 'Only site admins may do this.') },
  });
  const err = await client.adminRooms().catch((e) => e);
  assert.equal(err.code, 'forbidden');
});

test('closeRoom addresses the given room, and needs one', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { 'room.close': (f, s) => s.reply(f, {}) },
  });
  assert.equal((await client.closeRoom().catch((e) => e)).code, 'not_joined');
  await client.closeRoom({ room: ROOM });
  assert.deepEqual([last(socket()).type, last(socket()).room, last(socket()).data], ['room.close', ROOM, {}]);
});
