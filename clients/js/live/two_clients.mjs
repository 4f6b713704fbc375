// Drives the real gateway with the shared protocol client (run by tests/e2e/test_js_client.py
// under `node --experimental-websocket`): prints one JSON line with what it observed.
import { ShareTubeClient } from '../sharetube-client.js';

const [url, ownerToken, guestToken] = process.argv.slice(2);
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(predicate, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const value = predicate();
    if (value) return value;
    await wait(20);
  }
  throw new Error('timed out');
}

const owner = new ShareTubeClient({ url, token: ownerToken });
const guest = new ShareTubeClient({ url, token: guestToken });
await owner.connect();
await guest.connect();
const clock = await owner.syncClock({ samples: 5 });
const created = await owner.createRoom({ name: 'js' });
const code = created.room.code;
await owner.join(code);
await guest.join(code);
await owner.queueAdd('https://youtu.be/dQw4w9WgXcQ');
await owner.play();
const playing = await until(() => {
  const s = guest.getState(code);
  return s && s.playback.status === 'playing' ? s : null;
});
await wait(300);
const ownerExpected = owner.expectedPositionMs(code);
const guestExpected = guest.expectedPositionMs(code);
let forbidden = null;
try {
  await guest.pause();
} catch (err) {
  forbidden = err.code;
}
const fresh = await guest.sync(code);
console.log(JSON.stringify({
  clock,
  status: playing.playback.status,
  video: playing.playback.video_id,
  queueAfterPlay: guest.getState(code).queue.length,
  ownerExpected,
  guestExpected,
  forbidden,
  membersOnline: fresh.members.filter((m) => m.online).length,
}));
owner.disconnect();
guest.disconnect();
