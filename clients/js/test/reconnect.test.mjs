// Client resilience: reconnect with backoff and jitter, rooms resumed from a fresh snapshot,
// and commands that go through exactly once across a reconnect, or fail clearly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShareTubeClient } from '../sharetube-client.js';
import { connectedClient, FakeClock, fakeSocketClass, flush } from './fakes.mjs';

const ROOM = 'AbC123';

const snapshot = (v, over = {}) => ({
  room: { code: ROOM },
  settings: {},
  members: [],
  queue: [],
  playback: { status: 'paused', position_ms: 0, anchor_ms: 0, rate: 1 },
  chat: [],
  versions: { playback: v, members: v, settings: v, queue: v, chat: v },
  v,
  ...over,
});

/**
 * A fake server with the real one's idempotency: a request id is applied once, and a retry
 * gets the recorded reply. `hold` leaves a command's first delivery unanswered (the socket
 * drops before the reply), `applied` counts what really happened.
 */
function idempotentServer({ hold = new Set() } = {}) {
  const replies = new Map();
  const applied = [];
  let version = 5;
  const handlers = {
    join: (f, s) => s.reply(f, snapshot(version)),
    'room.sync': (f, s) => s.reply(f, snapshot(version)),
    'queue.add': (f, s) => {
      if (!replies.has(f.id)) {
        applied.push(f.data.video_id);
        version += 1;
        replies.set(f.id, { entry: { id: `e${applied.length}`, video_id: f.data.video_id } });
      }
      if (hold.delete(f.data.video_id)) return; // applied, but the reply never arrives
      s.reply(f, replies.get(f.id));
    },
  };
  return { handlers, applied };
}

const reconnecting = (over = {}) => ({ reconnect: { minMs: 1000, maxMs: 8000, stableMs: 5000 }, random: () => 0.5, ...over });

/** Run the reconnect timer and let the new socket open, re-join and flush. */
async function reconnectNow(clock, ms = 20_000) {
  clock.advance(ms);
  await flush();
  await flush();
  await flush();
}

test('reconnect is off by default: the socket stays closed', async () => {
  const { client, clock, WebSocketImpl } = await connectedClient(ShareTubeClient);
  WebSocketImpl.instances.at(-1).drop(1006);
  clock.advance(60_000);
  await flush();
  assert.equal(WebSocketImpl.instances.length, 1);
  assert.equal(client.connected, false);
});

test('reconnects with exponential backoff and jitter, and resets after a stable connection', async () => {
  const clock = new FakeClock();
  let opens = true;
  const WebSocketImpl = fakeSocketClass(() => {}, { autoOpen: false });
  const client = new ShareTubeClient({
    url: 'ws://127.0.0.1:8000/ws', token: 't', WebSocketImpl,
    now: clock.now, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    clockResyncMs: 0, ...reconnecting(),
  });
  const delays = [];
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  client.connect();
  WebSocketImpl.instances.at(-1).open();
  await flush();
  // The server is down: every try is refused before it opens.
  opens = false;
  WebSocketImpl.instances.at(-1).drop(1006);
  for (let i = 0; i < 5; i++) {
    clock.advance(delays.at(-1));
    await flush();
    assert.equal(WebSocketImpl.instances.length, i + 2, 'one new socket per try');
    if (!opens) WebSocketImpl.instances.at(-1).drop(1006);
  }
  // Equal jitter with random() = 0.5: 3/4 of min(max, min * 2^n).
  assert.deepEqual(delays, [750, 1500, 3000, 6000, 6000, 6000]);

  // Back up: the next try opens and stays open; a later drop starts from the bottom again.
  clock.advance(delays.at(-1));
  await flush();
  WebSocketImpl.instances.at(-1).open();
  await flush();
  assert.equal(client.connected, true);
  clock.advance(6000);
  WebSocketImpl.instances.at(-1).drop(1006);
  assert.equal(delays.at(-1), 750);
  client.disconnect();
});

test('jitter spreads the clients of one server over the backoff window', async () => {
  const delays = [];
  for (const r of [0, 0.25, 0.99]) {
    const { client, socket } = await connectedClient(ShareTubeClient, reconnecting({ random: () => r }));
    client.on('reconnecting', (e) => delays.push(e.delayMs));
    socket().drop(1006);
    client.disconnect();
  }
  assert.deepEqual(delays, [500, 625, 995]);
});

test('after a reconnect every joined room is joined again and rebuilt from a fresh snapshot', async () => {
  const { handlers } = idempotentServer();
  const { client, clock, socket } = await connectedClient(ShareTubeClient, { handlers, ...reconnecting() });
  await client.join(ROOM, { player: true });
  const snaps = [];
  client.on('snapshot', (s) => snaps.push(s.state.v));
  socket().drop(1006);
  await reconnectNow(clock);
  const joins = socket().sent.filter((f) => f.type === 'join');
  assert.deepEqual(joins.map((f) => [f.room, f.data]), [[ROOM, { player: true }]]);
  assert.deepEqual(snaps, [5]);
  assert.equal(client.getState(ROOM).v, 5);
  client.disconnect();
});

test('a command whose reply was lost in the drop goes through exactly once after the reconnect', async () => {
  const server = idempotentServer({ hold: new Set(['held1234567']) });
  const { client, clock, socket } = await connectedClient(ShareTubeClient, { handlers: server.handlers, ...reconnecting() });
  await client.join(ROOM);
  const first = socket();
  const added = client.queueAdd('held1234567', { room: ROOM, timeoutMs: 60_000 });
  await flush();
  assert.equal(server.applied.length, 1, 'applied on the server, reply lost');
  first.drop(1006);
  await reconnectNow(clock);
  const retried = socket().sent.filter((f) => f.type === 'queue.add');
  assert.equal(retried.length, 1);
  assert.equal(retried[0].id, first.sent.find((f) => f.type === 'queue.add').id, 'the same request id');
  assert.deepEqual(await added, { entry: { id: 'e1', video_id: 'held1234567' } });
  assert.deepEqual(server.applied, ['held1234567'], 'never twice');
  // The re-send comes after the room was joined again on the new socket.
  const types = socket().sent.map((f) => f.type).filter((t) => t !== 'time.ping');
  assert.deepEqual(types, ['join', 'queue.add']);
  client.disconnect();
});

test('a command made while disconnected waits for the reconnect and is sent once', async () => {
  const server = idempotentServer();
  const { client, clock, socket, WebSocketImpl } = await connectedClient(ShareTubeClient, { handlers: server.handlers, ...reconnecting() });
  await client.join(ROOM);
  socket().drop(1006);
  const before = WebSocketImpl.instances.length;
  const added = client.queueAdd('offline0001', { room: ROOM, timeoutMs: 60_000 });
  await flush();
  assert.equal(WebSocketImpl.instances.length, before, 'nothing to send it on yet');
  await reconnectNow(clock);
  assert.equal((await added).entry.video_id, 'offline0001');
  assert.deepEqual(server.applied, ['offline0001']);
  client.disconnect();
});

test('without a reconnect in time a command fails clearly and is never sent later', async () => {
  const server = idempotentServer();
  const { client, clock, socket, WebSocketImpl } = await connectedClient(ShareTubeClient, {
    handlers: server.handlers, ...reconnecting({ reconnect: { minMs: 30_000, maxMs: 30_000 } }),
  });
  await client.join(ROOM);
  socket().drop(1006);
  const outcome = client.queueAdd('toolate0001', { room: ROOM, timeoutMs: 2000 }).catch((e) => e);
  clock.advance(2000);
  const err = await outcome;
  assert.equal(err.code, 'disconnected');
  assert.deepEqual(err.details, { sent: false }, 'it never left: it was not applied');
  await reconnectNow(clock, 60_000);
  assert.ok(WebSocketImpl.instances.length > 1);
  assert.deepEqual(socket().sent.filter((f) => f.type === 'queue.add'), []);
  assert.deepEqual(server.applied, []);
  client.disconnect();
});

test('a command sent before the drop that times out says it may have been applied, and is not re-sent', async () => {
  const server = idempotentServer({ hold: new Set(['maybe000001']) });
  const { client, clock, socket } = await connectedClient(ShareTubeClient, {
    handlers: server.handlers, ...reconnecting({ reconnect: { minMs: 30_000, maxMs: 30_000 } }),
  });
  await client.join(ROOM);
  const first = socket();
  const outcome = client.queueAdd('maybe000001', { room: ROOM, timeoutMs: 3000 }).catch((e) => e);
  await flush();
  first.drop(1006);
  clock.advance(3000);
  const err = await outcome;
  assert.equal(err.code, 'timeout');
  assert.deepEqual(err.details, { sent: true });
  await reconnectNow(clock, 60_000);
  assert.deepEqual(socket().sent.filter((f) => f.type === 'queue.add'), []);
  // Retrying with the same id is safe: the server answers from its record.
  const id = first.sent.find((f) => f.type === 'queue.add').id;
  const again = await client.request('queue.add', { video_id: 'maybe000001' }, { room: ROOM, requestId: id });
  assert.equal(again.entry.id, 'e1');
  assert.deepEqual(server.applied, ['maybe000001']);
  client.disconnect();
});

test('joins, snapshots, leaves and clock pings are not re-sent: they fail with disconnected', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, reconnecting());
  const pending = [
    client.request('time.ping', { t0: 1 }),
    client.request('room.sync', {}, { room: ROOM }),
  ].map((p) => p.catch((e) => e));
  socket().drop(1006);
  for (const err of await Promise.all(pending)) assert.equal(err.code, 'disconnected');
  assert.equal((await client.request('time.ping', { t0: 2 }).catch((e) => e)).code, 'disconnected');
  client.disconnect();
});

test('a draining server: reconnect within the window it names, not after the backoff', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient, reconnecting({ random: () => 0.9 }));
  const delays = [];
  client.on('reconnecting', (r) => delays.push([r.delayMs, r.code]));
  const s = socket();
  s.receiveNow({ type: 'reconnect', data: { reason: 'shutdown', within_ms: 2000 } });
  s.drop(1012);
  assert.deepEqual(delays, [[1800, 1012]]);
  client.disconnect();
});

test('a refused token (4001) and disconnect() stop reconnecting; queued commands fail', async () => {
  const a = await connectedClient(ShareTubeClient, reconnecting());
  a.socket().drop(4001);
  a.clock.advance(60_000);
  await flush();
  assert.equal(a.WebSocketImpl.instances.length, 1);

  const b = await connectedClient(ShareTubeClient, reconnecting());
  b.socket().drop(1006);
  const queued = b.client.queueAdd('bye00000001', { room: ROOM }).catch((e) => e);
  b.client.disconnect();
  assert.equal((await queued).code, 'disconnected');
  b.clock.advance(60_000);
  await flush();
  assert.equal(b.WebSocketImpl.instances.length, 1);
});

test('a resync frame (the server missed events) fetches a fresh snapshot of that room', async () => {
  const { handlers } = idempotentServer();
  const { client, socket } = await connectedClient(ShareTubeClient, { handlers, ...reconnecting() });
  await client.join(ROOM);
  socket().receiveNow({ type: 'resync', room: ROOM, data: { reason: 'bus_reconnected' } });
  socket().receiveNow({ type: 'resync', room: 'Other9', data: { reason: 'bus_reconnected' } });
  const syncs = socket().sent.filter((f) => f.type === 'room.sync');
  assert.deepEqual(syncs.map((f) => f.room), [ROOM]);
  client.disconnect();
});

test('an id already waiting for its reply is refused rather than confused', async () => {
  const { client } = await connectedClient(ShareTubeClient, reconnecting());
  client.request('queue.add', { video_id: 'x' }, { room: ROOM, requestId: 'same' }).catch(() => {});
  const err = await client.request('queue.add', { video_id: 'y' }, { room: ROOM, requestId: 'same' }).catch((e) => e);
  assert.equal(err.code, 'bad_request');
  client.disconnect();
});

test('a re-join that gets no answer is tried again until one does: the room is not left deaf', async () => {
  let unanswered = 2; // the first two re-joins after the reconnect time out
  const server = idempotentServer();
  const handlers = {
    ...server.handlers,
    join: (f, s) => {
      if (s !== first && unanswered > 0) {
        unanswered -= 1;
        return;
      }
      server.handlers.join(f, s);
    },
  };
  const { client, clock, socket } = await connectedClient(ShareTubeClient, { handlers, ...reconnecting() });
  const first = socket();
  await client.join(ROOM);
  const errors = [];
  client.on('error', (e) => errors.push(e.error.code));
  const snaps = [];
  client.on('snapshot', (s) => snaps.push(s.state.v));
  first.drop(1006);
  await reconnectNow(clock);
  for (let i = 0; i < 4; i += 1) {
    clock.advance(5000); // the re-join's reply timeout, then its retry
    await flush();
    clock.advance(5000);
    await flush();
  }
  const joins = socket().sent.filter((f) => f.type === 'join');
  assert.equal(joins.length, 3, 'two unanswered re-joins, then the one answered');
  assert.deepEqual(errors, ['timeout', 'timeout']);
  assert.deepEqual(snaps, [5]);
  assert.equal(client.getState(ROOM).v, 5);
  client.disconnect();
});
