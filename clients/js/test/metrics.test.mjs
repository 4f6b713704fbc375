import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShareTubeClient } from '../sharetube-client.js';
import { connectedClient } from './fakes.mjs';

test('reportDrift sends drift.report {drift_ms, rate} without a room, bounded', async () => {
  const seen = [];
  const { client, socket } = await connectedClient(ShareTubeClient, {
    handlers: { 'drift.report': (f) => { seen.push(f); socket().reply(f, {}); } },
  });
  assert.deepEqual(await client.reportDrift(-123.5, 1.02), {});
  await client.reportDrift(9e9);
  await client.reportDrift(10, 99);
  assert.deepEqual(seen.map((f) => f.data), [
    { drift_ms: -123.5, rate: 1.02 },
    { drift_ms: 600000 },
    { drift_ms: 10, rate: 16 },
  ]);
  assert.ok(seen.every((f) => !('room' in f)));
});

test('reportDrift refuses a non-number without sending', async () => {
  const { client, socket } = await connectedClient(ShareTubeClient);
  const before = socket().sent.length;
  await assert.rejects(client.reportDrift(Number.NaN), /finite/);
  assert.equal(socket().sent.length, before);
});
