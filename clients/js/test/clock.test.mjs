import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShareTubeClient, clockSample, pickBestSample } from '../sharetube-client.js';
import { connectedClient, FakeClock, flush } from './fakes.mjs';

const SERVER_AHEAD_MS = 5_000; // the true offset the client must find

/**
 * A time.ping handler whose n-th reply takes delays[n % len] = [up, down] ms on the fake clock.
 * It records pings that arrive before the previous reply reached the client (they must not).
 */
function delayedPing(clock, delays, log) {
  let n = 0;
  let undelivered = 0;
  log.overlaps = 0;
  log.pings = 0;
  return (frame, socket) => {
    log.pings += 1;
    if (undelivered > 0) log.overlaps += 1;
    const [up, down] = delays[n++ % delays.length];
    clock.advance(up);
    const serverMs = clock.now() + SERVER_AHEAD_MS;
    clock.advance(down);
    undelivered += 1;
    queueMicrotask(() => {
      undelivered -= 1;
      socket.receiveNow({ re: frame.id, ok: true, data: { t0: frame.data.t0, server_ms: serverMs } });
    });
  };
}

async function clientWithDelays(delays, options = {}) {
  const clock = new FakeClock();
  const log = {};
  const env = await connectedClient(ShareTubeClient, {
    clock,
    clockSamples: delays.length,
    handlers: { 'time.ping': delayedPing(clock, delays, log) },
    ...options,
  });
  return { ...env, log };
}

test('clockSample is NTP-style and pickBestSample takes the smallest rtt', () => {
  assert.deepEqual(clockSample({ t0: 1000, t1: 1100, serverMs: 6050 }), { rttMs: 100, offsetMs: 5000 });
  const best = pickBestSample([{ rttMs: 80, offsetMs: 1 }, { rttMs: 12, offsetMs: 2 }, { rttMs: 40, offsetMs: 3 }]);
  assert.deepEqual(best, { rttMs: 12, offsetMs: 2 });
  assert.equal(pickBestSample([]), null);
});

test('connect syncs the clock; symmetric delays give the exact offset from the min-rtt sample', async () => {
  const delays = [[40, 40], [90, 90], [6, 6], [25, 25], [300, 300], [10, 10], [70, 70], [15, 15]];
  const { client, clock, log } = await clientWithDelays(delays);
  assert.equal(log.pings, 8);
  assert.equal(log.overlaps, 0, 'pings are sequential');
  assert.deepEqual(client.clock, { offsetMs: SERVER_AHEAD_MS, rttMs: 12, synced: true });
  assert.equal(client.serverNow(), clock.now() + SERVER_AHEAD_MS);
});

test('asymmetric delays: still the min-rtt sample, off by half the asymmetry', async () => {
  // Sample 3 (up 4, down 20) has the smallest rtt, 24 ms; its error is (4 - 20) / 2 = -8 ms.
  // Sample 2 (20, 20) would be exact, but nothing on the client can know that.
  const delays = [[30, 10], [20, 20], [4, 20], [60, 5], [100, 100]];
  const { client, log } = await clientWithDelays(delays);
  assert.equal(log.overlaps, 0);
  assert.deepEqual(client.clock, { offsetMs: SERVER_AHEAD_MS - 8, rttMs: 24, synced: true });
});

test('syncClock called during a run joins it; a later call takes fresh samples', async () => {
  const { client, log } = await clientWithDelays([[5, 5], [3, 3]], { connect: false });
  await client.connect();
  const a = client.syncClock();
  const b = client.syncClock();
  assert.equal(a, b);
  assert.deepEqual(await a, { offsetMs: SERVER_AHEAD_MS, rttMs: 6, samples: 2 });
  assert.equal(log.pings, 2);
  await client.syncClock({ samples: 3 });
  assert.equal(log.pings, 5);
});

test('re-samples every clockResyncMs and on every reconnect', async () => {
  const { client, clock, log, socket } = await clientWithDelays([[5, 5]], { clockResyncMs: 30_000 });
  assert.equal(log.pings, 1);
  clock.advance(29_999);
  await flush();
  assert.equal(log.pings, 1);
  clock.advance(1);
  await flush();
  assert.equal(log.pings, 2);

  socket().drop();
  clock.advance(60_000); // no timer survives the close
  await flush();
  assert.equal(log.pings, 2);
  await client.connect();
  await flush();
  assert.equal(log.pings, 3);
});

test('a lost ping is skipped after pingTimeoutMs; the other samples still count', async () => {
  const clock = new FakeClock();
  let n = 0;
  const env = await connectedClient(ShareTubeClient, {
    clock,
    clockSamples: 3,
    pingTimeoutMs: 2000,
    connect: false,
    handlers: {
      'time.ping': (f, s) => {
        if (n++ === 1) return; // lost
        clock.advance(10);
        s.reply(f, { t0: f.data.t0, server_ms: clock.now() - 10 + 5 + SERVER_AHEAD_MS });
      },
    },
  });
  await env.client.connect();
  const run = env.client.syncClock();
  await flush();
  env.clock.advance(2000);
  const result = await run;
  assert.deepEqual(result, { offsetMs: SERVER_AHEAD_MS, rttMs: 10, samples: 2 });
});

test('serverNow is the local clock before any sync', () => {
  const clock = new FakeClock(42);
  const client = new ShareTubeClient({ url: 'ws://x/ws', token: 't', now: clock.now });
  assert.equal(client.serverNow(), 42);
  assert.equal(client.clock.synced, false);
});
