// centrifuge-js over SockJS (sockjs-client from npm) against natsgate's
// /connection/sockjs, once per SockJS transport the SDK may end up on:
// websocket, xhr-streaming and xhr-polling (forced with sockjs-client's
// `transports` option). Two gateways share one nats-server: the SockJS
// client on gateway A and a second client on gateway B see each other's
// publications. Covers connect, subscribe, publish, presence, history,
// recovery after a dropped transport, token refresh. Bad input is in
// sockjs_bad_input.mjs.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/sockjs.rs, which sets, besides GATEWAY_URLS and TOKEN_SECRET:
//   SOCKJS_URLS  comma-separated http://.../connection/sockjs of the gateways
//   API_URL      gateway B's http://.../api; API_KEY its key
//   CHANNEL_NS   a namespace with presence, history and recovery

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import SockJS from 'sockjs-client';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const SOCKJS_URLS = (process.env.SOCKJS_URLS || '').split(',').filter(Boolean);
const { API_URL = '', API_KEY = '', CHANNEL_NS = '' } = process.env;
if (SOCKJS_URLS.length < 2 || !API_URL || !API_KEY || !CHANNEL_NS) {
  throw new Error('run with `cargo test --release --test sockjs`');
}
const [SOCKJS_A, SOCKJS_B] = SOCKJS_URLS;
const TEST = { timeout: 20_000 };
const WAIT = 6_000;
const JSON_SDK = PROTOCOLS.find((p) => p.name === 'json');

async function apiPublish(channel, data) {
  const response = await fetch(`${API_URL}/publish`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.ok(body.result, JSON.stringify(body));
}

/** Collects a subscription's publication data. */
function collect(sub) {
  const seen = [];
  sub.on('publication', (ctx) => seen.push(ctx.data));
  return seen;
}

async function until(predicate, what) {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const transport of ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource']) {
  describe(`sockjs ${transport}`, () => {
    const pool = new ClientPool(JSON_SDK);
    afterEach(() => pool.disconnectAll());

    const sockjsClient = (endpoint, options = {}) =>
      pool.client([{ transport: 'sockjs', endpoint }], {
        sockjs: SockJS,
        sockjsOptions: { transports: [transport] },
        ...options,
      });

    test('connect, subscribe, publish across gateways, presence, history', TEST, async () => {
      const channel = `${CHANNEL_NS}:${uniqueChannel('sj')}`;
      const a = sockjsClient(SOCKJS_A, { token: connToken('alice') });
      const b = pool.client(GATEWAY_URLS[1], { token: connToken('bob') });
      const connected = nextEvent(a, 'connected', WAIT, 'sockjs connected');
      a.connect();
      b.connect();
      const ctx = await connected;
      // The SDK names the SockJS transport in use: the forced one.
      assert.equal(ctx.transport, `sockjs-${transport}`);
      const subA = a.newSubscription(channel);
      const subB = b.newSubscription(channel);
      const seenA = collect(subA);
      const seenB = collect(subB);
      subA.subscribe();
      subB.subscribe();
      await Promise.all([nextEvent(subA, 'subscribed', WAIT), nextEvent(subB, 'subscribed', WAIT)]);
      // SockJS on A -> WebSocket on B, and back, through NATS.
      await subA.publish({ from: 'a', text: 'héllo\u2028"quoted"\n' });
      await b.publish(channel, { from: 'b' });
      await until(() => seenA.length === 2 && seenB.length === 2, 'both publications on both clients');
      assert.deepEqual(seenA, [{ from: 'a', text: 'héllo\u2028"quoted"\n' }, { from: 'b' }]);
      assert.deepEqual(seenB, seenA);
      const presence = await subA.presence();
      const users = Object.values(presence.clients).map((c) => c.user).sort();
      assert.deepEqual(users, ['alice', 'bob']);
      const history = await subA.history({ limit: 10 });
      assert.deepEqual(history.publications.map((p) => p.data), seenA);
    });

    test('recovers publications missed while the transport was down', TEST, async () => {
      const channel = `${CHANNEL_NS}:${uniqueChannel('sjr')}`;
      const a = sockjsClient(SOCKJS_B, { token: connToken('carol') });
      const sub = a.newSubscription(channel, { recoverable: true });
      const seen = collect(sub);
      a.connect();
      sub.subscribe();
      await nextEvent(sub, 'subscribed', WAIT);
      await apiPublish(channel, { n: 1 });
      await until(() => seen.length === 1, 'first publication');
      const connecting = nextEvent(a, 'connecting', WAIT, 'client reconnecting');
      // Drop the SockJS connection under the SDK.
      a._transport._transport.close();
      await connecting;
      await apiPublish(channel, { n: 2 });
      await apiPublish(channel, { n: 3 });
      const resubscribed = await nextEvent(sub, 'subscribed', WAIT, 'resubscribed');
      assert.equal(resubscribed.wasRecovering, true);
      assert.equal(resubscribed.recovered, true);
      await until(() => seen.length === 3, 'recovered publications');
      assert.deepEqual(seen, [{ n: 1 }, { n: 2 }, { n: 3 }]);
    });

    test('refreshes an expiring connection token', TEST, async () => {
      let calls = 0;
      const a = sockjsClient(SOCKJS_A, {
        token: connToken('dave', { expIn: 2 }),
        getToken: async () => {
          calls += 1;
          return connToken('dave', { expIn: 3600 });
        },
      });
      const channel = uniqueChannel('sjt');
      a.connect();
      await nextEvent(a, 'connected', WAIT);
      await until(() => calls >= 1, 'getToken for the refresh');
      // Still the same connection, and it works after the refresh.
      // Past the old token's expiry plus the gateways' 1 s close delay.
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(a.state, 'connected');
      const sub = a.newSubscription(channel);
      sub.subscribe();
      await nextEvent(sub, 'subscribed', WAIT);
    });
  });
}
