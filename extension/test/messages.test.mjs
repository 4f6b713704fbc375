import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canControl, remoteUrl, socketUrl, videoIdFromUrl } from '../shared/messages.js';

const room = (mode, members) => ({ settings: { control_mode: mode }, members, room: { owner_id: 'o' } });
const members = [
  { user_id: 'o', role: 'owner' },
  { user_id: 'p', role: 'operator' },
  { user_id: 'm', role: 'member' },
];

test('canControl mirrors the rooms service permission matrix', () => {
  const table = {
    owner_only: { o: true, p: false, m: false, stranger: false },
    operators: { o: true, p: true, m: false, stranger: false },
    any: { o: true, p: true, m: true, stranger: false },
  };
  for (const [mode, expected] of Object.entries(table)) {
    for (const [user, allowed] of Object.entries(expected)) {
      assert.equal(canControl(room(mode, members), user), allowed, `${mode} ${user}`);
    }
  }
  assert.equal(canControl(undefined, 'o'), false);
  assert.equal(canControl(room('any', members), undefined), false);
  // The owner may be missing from a members list that is still loading.
  assert.equal(canControl(room('owner_only', []), 'o'), true);
});

test('videoIdFromUrl reads watch URLs only', () => {
  assert.equal(videoIdFromUrl('https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=10'), 'dQw4w9WgXcQ');
  assert.equal(videoIdFromUrl('https://www.youtube.com/results?search_query=x'), null);
  assert.equal(videoIdFromUrl('https://www.youtube.com/watch?v=short'), null);
  assert.equal(videoIdFromUrl('not a url'), null);
});

test('socketUrl and remoteUrl follow the server URL', () => {
  assert.equal(socketUrl('http://127.0.0.1:8000'), 'ws://127.0.0.1:8000/ws');
  assert.equal(socketUrl('https://watch.example.com/base/'), 'wss://watch.example.com/base/ws');
  assert.equal(remoteUrl('https://watch.example.com/', 'AbC123'), 'https://watch.example.com/mobile-remote?room=AbC123');
});
