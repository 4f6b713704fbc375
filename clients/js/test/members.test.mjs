// `members` events: the whole list replaces it; a delta {changed, gone} merges (mergeMembers),
// giving the list a fresh snapshot would carry, ordered by (joined_at_ms, user_id).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { applySnapshot, applyEvent, mergeMembers } from '../sharetube-client.js';

const entry = (user_id, joined_at_ms, over = {}) => ({
  user_id, name: user_id, role: 'member', online: true, player: false, away: false, joined_at_ms, ...over,
});
const ANN = entry('a', 10, { role: 'owner' });
const BOB = entry('b', 20);
const CID = entry('c', 30);

const snapshot = (members, v = 5) => ({
  room: { code: 'AbC123' }, settings: {}, members, queue: [], playback: { status: 'idle' }, chat: [],
  versions: { playback: 1, members: v, settings: 1, queue: 1, chat: 1 }, v,
});

describe('mergeMembers', () => {
  test('a changed entry is replaced in place', () => {
    const away = { ...BOB, online: false, away: true };
    assert.deepEqual(mergeMembers([ANN, BOB, CID], { changed: [away], gone: [] }), [ANN, away, CID]);
  });

  test('a newcomer goes where a snapshot lists them', () => {
    const dan = entry('d', 40);
    assert.deepEqual(mergeMembers([ANN, CID], { changed: [dan], gone: [] }), [ANN, CID, dan]);
    // Back after leaving: their first join's place, not the end.
    assert.deepEqual(mergeMembers([ANN, CID], { changed: [BOB], gone: [] }), [ANN, BOB, CID]);
    // The same millisecond: by user id.
    const early = entry('0', 20);
    assert.deepEqual(mergeMembers([ANN, BOB], { changed: [early], gone: [] }), [ANN, early, BOB]);
    // An entry without joined_at_ms (an older server's) stays last.
    const old = { user_id: 'z', name: 'z' };
    assert.deepEqual(mergeMembers([ANN, old], { changed: [CID] }), [ANN, CID, old]);
  });

  test('gone ids are dropped, unknown ones ignored; the input is not changed', () => {
    const members = Object.freeze([ANN, BOB, CID]);
    assert.deepEqual(mergeMembers(members, { changed: [], gone: ['b', 'never-listed'] }), [ANN, CID]);
    assert.deepEqual(mergeMembers(members, { gone: ['a'] }), [BOB, CID]);
    assert.deepEqual(members, [ANN, BOB, CID]);
  });

  test('deltas fold into the list a snapshot would carry (random changes)', () => {
    let seed = 7;
    const random = (n) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
    for (let run = 0; run < 200; run += 1) {
      const rows = new Map(); // user -> {joined, listed, rev}
      const fresh = () => [...rows.entries()]
        .filter(([, r]) => r.listed)
        .sort(([ua, a], [ub, b]) => a.joined - b.joined || (ua < ub ? -1 : ua > ub ? 1 : 0))
        .map(([u, r]) => entry(u, r.joined, { name: `${u}.${r.rev}` }));
      let members = fresh();
      for (let clock = 1; clock <= 20; clock += 1) {
        const touched = new Set();
        for (let k = random(4); k > 0; k -= 1) touched.add(users[random(users.length)]);
        for (const u of touched) {
          const r = rows.get(u) ?? { joined: clock * 10 + random(5), listed: false, rev: 0 };
          // Not listed: back with their old place (left) or a new one (kicked, joined again).
          if (!r.listed && random(2)) r.joined = clock * 10 + random(5);
          rows.set(u, { ...r, listed: random(3) > 0, rev: r.rev + 1 });
        }
        const now = new Map(fresh().map((m) => [m.user_id, m]));
        const delta = {
          changed: [...touched].filter((u) => now.has(u)).map((u) => now.get(u)),
          gone: [...touched].filter((u) => !now.has(u)),
        };
        members = mergeMembers(members, delta);
        assert.deepEqual(members, fresh(), `run ${run}, step ${clock}`);
      }
    }
  });
});

describe('members events in the room state', () => {
  test('a delta merges, a whole list replaces, an old one is ignored', () => {
    let r = applyEvent(applySnapshot(snapshot([ANN, CID])), { type: 'members', v: 6, data: { changed: [BOB], gone: [] } });
    assert.deepEqual([r.applied, r.gap], [true, false]);
    assert.deepEqual(r.state.members, [ANN, BOB, CID]);
    r = applyEvent(r.state, { type: 'members', v: 7, data: { changed: [], gone: ['a'] } });
    assert.deepEqual(r.state.members, [BOB, CID]);
    assert.equal(applyEvent(r.state, { type: 'members', v: 7, data: { gone: ['b'] } }).applied, false);
    r = applyEvent(r.state, { type: 'members', v: 8, data: [ANN] });
    assert.deepEqual(r.state.members, [ANN]);
    assert.equal(r.state.versions.members, 8);
  });

  test('snapshot + delta events equals a fresh snapshot', () => {
    const dan = entry('d', 40);
    const events = [
      { type: 'members', v: 6, data: { changed: [dan], gone: [] } },
      { type: 'members', v: 7, data: { changed: [{ ...ANN, role: 'operator' }, { ...CID, role: 'owner' }], gone: [] } },
      { type: 'members', v: 8, data: { changed: [BOB], gone: ['d'] } },
    ];
    let s = applySnapshot(snapshot([ANN, CID]));
    for (const ev of events) s = applyEvent(s, ev).state;
    const fresh = applySnapshot(snapshot([{ ...ANN, role: 'operator' }, BOB, { ...CID, role: 'owner' }], 8));
    assert.deepEqual({ ...s, lastEventV: null }, fresh);
  });
});
