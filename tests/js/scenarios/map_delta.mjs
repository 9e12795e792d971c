// centrifuge-js (JSON and Protobuf builds) map subscriptions with delta
// compression (`delta: 'fossil'`), issue #20: the state, live changes of
// interleaved keys made with the delta flag (a new key, a removal, the key
// set again), and a reconnect that recovers missed changes; every value the
// SDK holds must equal the one published, and deltas must really be used.
// The bytes on the wire (WebSocket frames as received) of a delta
// subscriber and of a plain one are printed as `MAP-DELTA-BYTES ...` lines.
//
// Not picked up by `node --test tests/js/`: run by tests/map_delta_sdk.rs
// against two natsgate gateways on NATS (the API on the first, subscribers
// on the second), on the embedded broker, and against Centrifugo v6.9.1:
//   GATEWAY_URLS   two ws:// URLs (the same one twice for Centrifugo)
//   TOKEN_SECRET   the HMAC token key
//   API_URL, API_KEY  the HTTP API of the first server (http://host:port)
// Namespace `mdl`: a persistent map with allowed_delta_types fossil.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, countingWebSocket, nextEvent, serverApi, uniqueChannel, withTimeout,
} from '../helpers.mjs';

const { API_URL = '', API_KEY = '' } = process.env;
if (!API_URL || !API_KEY) {
  throw new Error('API_URL and API_KEY must be set: run with `cargo test --release --test map_delta_sdk`');
}
const TEST = { timeout: 30_000 };
const WAIT = 8_000;
const SUBSCRIBER_URL = GATEWAY_URLS[GATEWAY_URLS.length - 1];
const KEYS = ['k0', 'k1', 'k2'];

const api = (method, params) => serverApi(API_URL, API_KEY, method, params);

/** A value that changes a little with every write (key `k`, version `n`). */
function documentOf(k, n) {
  const items = [];
  for (let i = 0; i < 30; i++) items.push({ id: i, name: `${k} item ${i}`, price: i * 10 + (n % 7) });
  return { key: k, n, title: 'a map value that changes a little with every write', items };
}

/** The client's view of the map: replaced on 'sync', changed on 'update'. */
function mirror(sub, protocol) {
  const state = new Map();
  const waiters = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sub.on('sync', (ctx) => {
    state.clear();
    for (const e of ctx.entries) state.set(e.key, protocol.decode(e.data));
    wake();
  });
  sub.on('update', (ctx) => {
    if (ctx.removed) state.delete(ctx.key);
    else state.set(ctx.key, protocol.decode(ctx.data));
    wake();
  });
  const until = (check, what) =>
    withTimeout(
      (async () => {
        while (!check()) await new Promise((resolve) => waiters.push(resolve));
      })(),
      WAIT,
      `${what} (state ${JSON.stringify([...state.keys()])})`,
    );
  return { state, until };
}

/** The server's state, as the HTTP API reads it. */
async function serverState(channel) {
  const result = await api('map_read_state', { channel, limit: -1 });
  return new Map((result.entries || []).map((e) => [e.key, e.data]));
}

const sorted = (map) => JSON.stringify([...map].sort(([a], [b]) => (a < b ? -1 : 1)));

for (const protocol of PROTOCOLS) {
  describe(`map subscriptions with delta (${protocol.name})`, () => {
    let pool;
    afterEach(() => pool.disconnectAll());

    test('every value is the one published: state, live deltas per key, recovery', TEST, async () => {
      pool = new ClientPool(protocol);
      const channel = uniqueChannel(`mdl:js-${protocol.name}`);
      const expected = new Map();
      const write = async (key, n) => {
        await api('map_publish', { channel, key, data: documentOf(key, n), delta: true });
        expected.set(key, documentOf(key, n));
      };
      for (const k of KEYS) await write(k, 0);

      const deltaWire = { bytes: 0 };
      const plainWire = { bytes: 0 };
      const client = pool.client(SUBSCRIBER_URL, { token: connToken('map-delta'), websocket: countingWebSocket(deltaWire) });
      const plainClient = pool.client(SUBSCRIBER_URL, { token: connToken('map-plain'), websocket: countingWebSocket(plainWire) });
      const sub = client.newMapSubscription(channel, { delta: 'fossil' });
      const plain = plainClient.newMapSubscription(channel);
      const view = mirror(sub, protocol);
      const plainView = mirror(plain, protocol);
      const subscribed = [nextEvent(sub, 'subscribed', WAIT), nextEvent(plain, 'subscribed', WAIT)];
      sub.subscribe();
      plain.subscribe();
      client.connect();
      plainClient.connect();
      await Promise.all(subscribed);
      await view.until(() => view.state.size === KEYS.length, 'the state');
      await plainView.until(() => plainView.state.size === KEYS.length, 'the plain state');
      assert.equal(sorted(view.state), sorted(expected));
      deltaWire.bytes = 0;
      plainWire.bytes = 0;

      // Interleaved keys, a new key, a removal and the key set again.
      let writes = 0;
      const step = async (action) => {
        await action();
        writes++;
        const want = sorted(expected);
        await view.until(() => sorted(view.state) === want, `the state after change ${writes}`);
        await plainView.until(() => sorted(plainView.state) === want, `the plain state after change ${writes}`);
      };
      for (let n = 1; n <= 6; n++) for (const k of KEYS) await step(() => write(k, n));
      await step(() => write('new', 0));
      await step(async () => {
        await api('map_remove', { channel, key: 'k1' });
        expected.delete('k1');
      });
      await step(() => write('k1', 9));
      await step(() => write('k1', 10));
      assert.equal(sorted(plainView.state), sorted(expected));
      const stats = sub.deltaStats();
      assert.ok(stats.numDeltaPayloads >= 18, `live changes came as deltas: ${JSON.stringify(stats)}`);
      assert.ok(deltaWire.bytes * 2 < plainWire.bytes, `deltas are much smaller: ${deltaWire.bytes} vs ${plainWire.bytes}`);
      console.log(
        `MAP-DELTA-BYTES ${protocol.name}: ${writes} changes, wire ${deltaWire.bytes} bytes with delta, ` +
          `${plainWire.bytes} without (${((deltaWire.bytes * 100) / plainWire.bytes).toFixed(1)}%); ` +
          `${stats.numDeltaPayloads} deltas, ${stats.numFullPayloads} whole`,
      );

      // Away, then back: the missed changes are recovered with per-key deltas.
      const disconnected = nextEvent(client, 'disconnected', WAIT);
      client.disconnect();
      await disconnected;
      for (const [i, k] of ['k0', 'k2', 'k0', 'new'].entries()) await write(k, 20 + i);
      const back = nextEvent(sub, 'subscribed', WAIT, 'resubscribed');
      client.connect();
      const ctx = await back;
      assert.equal(ctx.recovered, true, `recovered: ${JSON.stringify(ctx)}`);
      await view.until(() => sorted(view.state) === sorted(expected), 'the recovered state');
      await step(() => write('k2', 99));
      // Compared as values: the API may order an object's keys otherwise.
      assert.deepEqual(await serverState(channel), expected, 'the server holds what was published');
    });
  });
}
