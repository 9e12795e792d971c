// centrifuge-js (JSON and Protobuf builds) presence-style map channels
// (Centrifugo v6.8+ `map_clients` and `map_users`): subscribers of a room
// channel whose namespace names presence prefixes are keys of the map
// channels `<prefix><room>`, which observers follow with
// newMapClientsSubscription (key: client id, with client info) and
// newMapUsersSubscription (key: user id). A client key goes when its client
// unsubscribes or disconnects; a user key stays until `map.key_ttl` after
// the user's last connection left; keys of live connections are renewed and
// outlive the TTL. With KILL_URL/KILL_PID, a SIGKILLed gateway's clients
// vanish from both maps after the TTL.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/map_presence.rs against natsgate (two gateways on NATS, the
// embedded broker) and Centrifugo v6.9.1, with, besides TOKEN_SECRET:
//   GATEWAY_URLS   ws:// URLs: clients join on the first and the last,
//                  observers watch from the last
//   API_URL        http://.../api; API_KEY its key
//   ROOM_NS        the namespace of the rooms (names both prefixes)
//   CLIENTS_PREFIX, USERS_PREFIX  its map_clients / map_users prefixes
//   KEY_TTL_MS     the presence namespaces' map.key_ttl in milliseconds
//   KILL_URL, KILL_PID  optional: a gateway to SIGKILL with clients on it

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { API_URL = '', API_KEY = '', ROOM_NS = '', CLIENTS_PREFIX = '', USERS_PREFIX = '', KILL_URL = '' } = process.env;
const KEY_TTL_MS = Number(process.env.KEY_TTL_MS || 0);
const KILL_PID = Number(process.env.KILL_PID || 0);
if (!API_URL || !API_KEY || !ROOM_NS || !CLIENTS_PREFIX || !USERS_PREFIX || !KEY_TTL_MS) {
  throw new Error('run with `cargo test --release --test map_presence`');
}
/** How long past the TTL a removal may take (the server's expiry check). */
const EXPIRY_SLACK_MS = 4_000;
const WAIT = 8_000;
const TEST = { timeout: 20_000 + 3 * KEY_TTL_MS };
const FIRST = GATEWAY_URLS[0];
const LAST = GATEWAY_URLS[GATEWAY_URLS.length - 1];

async function api(method, params) {
  const response = await fetch(`${API_URL}/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(response.status, 200, `${method} answered HTTP ${response.status}`);
  const body = await response.json();
  assert.ok(body.result, `${method} failed: ${JSON.stringify(body)}`);
  return body.result;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** An observer's view of a presence map: key -> the entry's user (info), and each change with its time. */
function mirror(sub) {
  const state = new Map();
  const updates = [];
  const waiters = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sub.on('sync', (ctx) => {
    state.clear();
    for (const e of ctx.entries) state.set(e.key, e.info ? { user: e.info.user, client: e.info.client } : null);
    wake();
  });
  sub.on('update', (ctx) => {
    updates.push({ key: ctx.key, removed: !!ctx.removed, at: Date.now() });
    if (ctx.removed) state.delete(ctx.key);
    else state.set(ctx.key, ctx.info ? { user: ctx.info.user, client: ctx.info.client } : null);
    wake();
  });
  const until = (check, what, ms = WAIT) =>
    withTimeout(
      (async () => {
        while (!check()) await new Promise((resolve) => waiters.push(resolve));
      })(),
      ms,
      `${what} (state ${JSON.stringify([...state])}, updates ${JSON.stringify(updates)})`,
    );
  return { state, updates, until };
}

/** A connected client of `user` subscribed to `room` through `url`; resolves with its client id. */
async function joinRoom(pool, url, user, room) {
  const client = pool.client(url, { token: connToken(user) });
  const connected = nextEvent(client, 'connected', WAIT, `${user} connected`);
  client.connect();
  const { client: id } = await connected;
  const sub = client.newSubscription(room);
  const subscribed = nextEvent(sub, 'subscribed', WAIT, `${user} subscribed to the room`);
  sub.subscribe();
  await subscribed;
  return { client, sub, id };
}

/** An observer of both presence maps of `room`, through `url`. */
async function observe(pool, url, room) {
  const client = pool.client(url, { token: connToken('observer') });
  const clients = client.newMapClientsSubscription(`${CLIENTS_PREFIX}${room}`);
  const users = client.newMapUsersSubscription(`${USERS_PREFIX}${room}`);
  const views = { clients: mirror(clients), users: mirror(users) };
  const ready = Promise.all([
    nextEvent(clients, 'subscribed', WAIT, 'clients map subscribed'),
    nextEvent(users, 'subscribed', WAIT, 'users map subscribed'),
  ]);
  clients.subscribe();
  users.subscribe();
  client.connect();
  await ready;
  return { client, ...views };
}

let killed = false;

for (const protocol of PROTOCOLS) {
  describe(`presence maps (${protocol.name})`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('joins and leaves on both gateways reach an observer; user keys expire after the TTL, live ones do not', TEST, async () => {
      const room = uniqueChannel(`${ROOM_NS}:room_${protocol.name}`);
      const alice = await joinRoom(pool, FIRST, 'alice', room);
      // A late observer gets the state so far, then every change.
      const obs = await observe(pool, LAST, room);
      await obs.clients.until(() => obs.clients.state.size === 1, 'alice in the clients state');
      assert.deepEqual(obs.clients.state.get(alice.id), { user: 'alice', client: alice.id }, 'a client key carries the client info');
      await obs.users.until(() => obs.users.state.has('alice'), 'alice in the users state');
      assert.equal(obs.users.state.get('alice'), null, 'a user key carries no info');

      const bob = await joinRoom(pool, LAST, 'bob', room);
      const alice2 = await joinRoom(pool, LAST, 'alice', room);
      await obs.clients.until(() => obs.clients.state.size === 3, 'three client keys');
      assert.deepEqual(obs.clients.state.get(bob.id), { user: 'bob', client: bob.id });
      await obs.users.until(() => obs.users.state.size === 2, 'two user keys');
      assert.deepEqual([...obs.users.state.keys()].sort(), ['alice', 'bob']);
      assert.equal(obs.users.updates.filter((u) => u.key === 'alice').length, 0, 'a second connection of a user adds no user key');

      // Unsubscribing removes the client key at once, not the user key.
      alice2.sub.unsubscribe();
      await obs.clients.until(() => !obs.clients.state.has(alice2.id), 'alice2 gone from the clients map');
      // Disconnecting removes bob's client key at once; his user key expires after the TTL.
      const left = Date.now();
      bob.client.disconnect();
      await obs.clients.until(() => !obs.clients.state.has(bob.id), 'bob gone from the clients map');
      assert.ok(obs.users.state.has('bob'), 'a user key outlives the disconnect');
      await obs.users.until(() => !obs.users.state.has('bob'), 'bob expired from the users map', KEY_TTL_MS + EXPIRY_SLACK_MS + WAIT);
      const expiredAfter = obs.users.updates.find((u) => u.key === 'bob' && u.removed).at - left;
      assert.ok(expiredAfter >= KEY_TTL_MS - 1000, `bob's user key expired ${expiredAfter} ms after he left, TTL ${KEY_TTL_MS} ms`);

      // Alice's keys were renewed while bob's expired: still there, never removed.
      await sleep(KEY_TTL_MS / 2);
      assert.deepEqual([...obs.clients.state.keys()], [alice.id]);
      assert.deepEqual([...obs.users.state.keys()], ['alice']);
      assert.ok(!obs.clients.updates.some((u) => u.key === alice.id && u.removed), 'alice never left the clients map');
      assert.ok(!obs.users.updates.some((u) => u.key === 'alice' && u.removed), 'alice never left the users map');
      const server = await api('map_read_state', { channel: `${CLIENTS_PREFIX}${room}`, limit: -1 });
      assert.deepEqual((server.entries || []).map((e) => e.key), [alice.id], 'the server state agrees');
    });

    test('a SIGKILLed gateway\'s clients vanish from both maps after the TTL', { ...TEST, skip: !KILL_PID || protocol.name !== 'json' }, async () => {
      assert.ok(!killed, 'one kill per run: the JSON build takes it');
      killed = true;
      const room = uniqueChannel(`${ROOM_NS}:kill_${protocol.name}`);
      const dave = await joinRoom(pool, FIRST, 'dave', room);
      const carol = await joinRoom(pool, KILL_URL, 'carol', room);
      const obs = await observe(pool, LAST, room);
      await obs.clients.until(() => obs.clients.state.size === 2, 'dave and carol in the clients map');
      await obs.users.until(() => obs.users.state.size === 2, 'dave and carol in the users map');
      carol.client.removeAllListeners();
      carol.client.on('error', () => {});
      const killedAt = Date.now();
      process.kill(KILL_PID, 'SIGKILL');
      carol.client.disconnect(); // no reconnect: the gateway is gone for good
      await obs.clients.until(() => !obs.clients.state.has(carol.id), 'carol expired from the clients map', KEY_TTL_MS + EXPIRY_SLACK_MS + WAIT);
      await obs.users.until(() => !obs.users.state.has('carol'), 'carol expired from the users map', KEY_TTL_MS + EXPIRY_SLACK_MS + WAIT);
      const gone = obs.clients.updates.find((u) => u.key === carol.id && u.removed).at - killedAt;
      console.log(`# carol's client key removed ${gone} ms after the SIGKILL (key_ttl ${KEY_TTL_MS} ms)`);
      assert.ok(gone >= KEY_TTL_MS / 3, `removed ${gone} ms after the kill: by expiry, not by a leave`);
      assert.deepEqual([...obs.clients.state.keys()], [dave.id], 'dave, on a live gateway, stays');
      assert.deepEqual([...obs.users.state.keys()], ['dave']);
      await sleep(0);
    });
  });
}
