// centrifuge-js (JSON and Protobuf builds) against natsgate's channel model:
// private channels through the subscription getToken callback, subscription
// token refresh, and server-side subscriptions from connection token claims.
//
// Not a *.test.mjs file on purpose: it needs a gateway configured for it, so
// tests/sdk_js_channels.rs runs it explicitly with
// `node --test tests/js/scenarios/channels.mjs` and sets:
//   GATEWAY_URLS      the gateway's ws:// URL (one)
//   TOKEN_SECRET      NATSGATE_TOKEN_HMAC_SECRET_KEY (connection tokens)
//   SUB_TOKEN_SECRET  NATSGATE_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY
//   API_URL, API_KEY  the gateway's HTTP API (http://host:port, NATSGATE_API_KEY)
//   SUB_CLOSE_DELAY_MS  NATSGATE_CLIENT_EXPIRED_SUB_CLOSE_DELAY in ms
// The gateway has a namespace `secret` (allow_publish_for_subscriber) and
// allows clients to publish into top-level channels.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientPool,
  GATEWAY_URLS,
  PROTOCOLS,
  connToken,
  hs256Token,
  nextEvent,
  uniqueChannel,
  withTimeout,
} from '../helpers.mjs';

const SUB_TOKEN_SECRET = process.env.SUB_TOKEN_SECRET || '';
const API_URL = process.env.API_URL || '';
const API_KEY = process.env.API_KEY || '';
const SUB_CLOSE_DELAY_MS = Number(process.env.SUB_CLOSE_DELAY_MS || '0');
if (!SUB_TOKEN_SECRET || !API_URL || !API_KEY || !SUB_CLOSE_DELAY_MS) {
  throw new Error('SUB_TOKEN_SECRET, API_URL, API_KEY and SUB_CLOSE_DELAY_MS must be set: run with `cargo test --release --test sdk_js_channels`');
}

const TEST = { timeout: 15_000 };
const WAIT = 8_000;
const [URL] = GATEWAY_URLS;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A subscription JWT for `user` in `channel`, signed with the subscription key. */
function subToken(user, channel, expIn, secret = SUB_TOKEN_SECRET) {
  const exp = Math.floor(Date.now() / 1000) + expIn;
  return hs256Token({ sub: user, channel, exp }, secret);
}

/** Publishes through the server HTTP API; asserts success. */
async function apiPublish(channel, data) {
  const response = await withTimeout(
    fetch(`${API_URL}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    }),
    5_000,
    'API publish',
  );
  const text = await response.text();
  assert.equal(response.status, 200, `POST /api/publish: ${response.status} ${text}`);
  const body = JSON.parse(text);
  assert.ok(!body.error, `POST /api/publish into ${channel}: ${text}`);
}

/** Collects every `event` of `emitter` into an array. */
function record(emitter, event) {
  const seen = [];
  emitter.on(event, (ctx) => seen.push(ctx));
  return seen;
}

for (const protocol of PROTOCOLS) {
  describe(`centrifuge-js ${protocol.name}: channels`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('private channel: getToken supplies a subscription token, publications flow', TEST, async () => {
      const channel = `$secret:${uniqueChannel(`room_${protocol.name}`)}`;
      const calls = { alice: [], bob: [] };
      const member = (user) => {
        const client = pool.client(URL, { token: connToken(user) });
        const sub = client.newSubscription(channel, {
          getToken: async (ctx) => {
            calls[user].push(ctx.channel);
            return subToken(user, ctx.channel, 60);
          },
        });
        return { client, sub };
      };
      const alice = member('alice');
      const bob = member('bob');
      const subscribed = Promise.all([
        nextEvent(alice.sub, 'subscribed', WAIT, 'alice subscribed'),
        nextEvent(bob.sub, 'subscribed', WAIT, 'bob subscribed'),
      ]);
      alice.sub.subscribe();
      bob.sub.subscribe();
      alice.client.connect();
      bob.client.connect();
      await subscribed;
      assert.deepEqual(calls, { alice: [channel], bob: [channel] }, 'getToken once per subscription, with the channel');

      // alice publishes as a subscriber (the namespace allows it), bob receives.
      const payload = { secret: 'hello', n: 7 };
      const atBob = nextEvent(bob.sub, 'publication', 5_000, 'publication at bob');
      await withTimeout(alice.sub.publish(protocol.encode(payload)), 5_000, 'publish reply');
      const got = await atBob;
      assert.equal(got.channel, channel);
      assert.deepEqual(protocol.decode(got.data), payload);
      assert.equal(got.info?.user, 'alice');

      // And from the server API.
      const fromApi = nextEvent(bob.sub, 'publication', 5_000, 'API publication at bob');
      await apiPublish(channel, { from: 'api' });
      assert.deepEqual(protocol.decode((await fromApi).data), { from: 'api' });
    });

    test('private channel: an expired token (109) makes the SDK call getToken again', TEST, async () => {
      const channel = `$secret:${uniqueChannel(`expired_${protocol.name}`)}`;
      let calls = 0;
      const client = pool.client(URL, { token: connToken('carol') });
      const sub = client.newSubscription(channel, {
        getToken: async () => {
          calls += 1;
          return subToken('carol', channel, calls === 1 ? -120 : 60);
        },
      });
      const errors = record(sub, 'error');
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed with the second token');
      sub.subscribe();
      client.connect();
      await subscribed;
      assert.equal(calls, 2, 'getToken: an expired token, then a good one');
      assert.ok(
        errors.some((e) => e.type === 'subscribe' && e.error.code === 109),
        `expected a subscribe error 109, got ${JSON.stringify(errors)}`,
      );
    });

    test('private channel: a token signed with the connection key is refused (103)', TEST, async () => {
      const channel = `$secret:${uniqueChannel(`wrongkey_${protocol.name}`)}`;
      const client = pool.client(URL, { token: connToken('dave') });
      const sub = client.newSubscription(channel, {
        // TOKEN_SECRET is the connection key; the gateway has a distinct subscription key.
        getToken: async () => subToken('dave', channel, 60, process.env.TOKEN_SECRET),
      });
      const unsubscribed = nextEvent(sub, 'unsubscribed', WAIT, 'unsubscribed after 103');
      sub.subscribe();
      client.connect();
      const ctx = await unsubscribed;
      assert.equal(ctx.code, 103, `expected unsubscribed with 103, got ${JSON.stringify(ctx)}`);
      assert.equal(sub.state, 'unsubscribed');
      assert.equal(client.state, 'connected', 'a refused subscription leaves the connection up');
    });

    test('subscription token refresh: getToken is called again and the subscription survives expiry', TEST, async () => {
      const channel = `$secret:${uniqueChannel(`refresh_${protocol.name}`)}`;
      const TTL = 3;
      const issued = []; // exp of every token handed out, in seconds
      const client = pool.client(URL, { token: connToken('erin') });
      const sub = client.newSubscription(channel, {
        getToken: async (ctx) => {
          const exp = Math.floor(Date.now() / 1000) + TTL;
          issued.push(exp);
          return hs256Token({ sub: 'erin', channel: ctx.channel, exp }, SUB_TOKEN_SECRET);
        },
      });
      const unsubscribed = record(sub, 'unsubscribed');
      const subscribing = record(sub, 'subscribing');
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      sub.subscribe();
      client.connect();
      await subscribed;
      const resubscribesBefore = subscribing.length;
      assert.equal(issued.length, 1, 'one token for the subscribe');
      const firstExp = issued[0];

      // The SDK refreshes when the reply's ttl runs out.
      const deadline = Date.now() + (TTL + 3) * 1000;
      while (issued.length < 2 && Date.now() < deadline) {
        await sleep(50);
      }
      assert.ok(issued.length >= 2, `getToken was not called again within ${TTL + 3} s (calls: ${issued.length})`);

      // Past the first token's expiry plus the server's grace delay, with
      // half a second of slack: without the refresh the server would have
      // unsubscribed the client (2501) by now.
      const unrefreshedEnd = firstExp * 1000 + SUB_CLOSE_DELAY_MS + 500;
      await sleep(Math.max(0, unrefreshedEnd - Date.now()));
      assert.equal(sub.state, 'subscribed');
      assert.deepEqual(unsubscribed, [], 'no unsubscribed event');
      assert.equal(subscribing.length, resubscribesBefore, 'no resubscribe (the server did not unsubscribe with 2501)');

      // Still receiving.
      const got = nextEvent(sub, 'publication', 5_000, 'publication after the refresh');
      await apiPublish(channel, { after: 'refresh' });
      assert.deepEqual(protocol.decode((await got).data), { after: 'refresh' });
      assert.equal(client.state, 'connected');
    });

    test('server-side subscription from a subs claim with data: subscribed and publication events', TEST, async () => {
      const feed = uniqueChannel(`feed_${protocol.name}`);
      const client = pool.client(URL, {
        token: connToken('heidi', { subs: { [feed]: { data: { hello: 'feed' } } } }),
      });
      const subscribed = nextEvent(client, 'subscribed', WAIT, 'server-side subscribed');
      client.connect();
      const ctx = await subscribed;
      assert.equal(ctx.channel, feed);
      assert.deepEqual(protocol.decode(ctx.data), { hello: 'feed' });

      let got = nextEvent(client, 'publication', 5_000, 'server-side publication from the API');
      await apiPublish(feed, { n: 1 });
      let pub = await got;
      assert.equal(pub.channel, feed);
      assert.deepEqual(protocol.decode(pub.data), { n: 1 });

      // From another client through the SDK's client-level publish.
      const other = pool.client(URL, { token: connToken('ivan') });
      const otherConnected = nextEvent(other, 'connected', WAIT, 'publisher connected');
      other.connect();
      await otherConnected;
      got = nextEvent(client, 'publication', 5_000, 'server-side publication from a client');
      await withTimeout(other.publish(feed, protocol.encode({ n: 2 })), 5_000, 'client publish reply');
      pub = await got;
      assert.deepEqual(protocol.decode(pub.data), { n: 2 });
      assert.equal(pub.info?.user, 'ivan');
    });

    // BUG (protobuf only): natsgate's connect reply leaves the value out of a
    // `subs` map entry whose SubscribeResult is empty (the `news` channel
    // from the `channels` claim); protobufjs decodes it as null and the SDK
    // throws "TypeError: Cannot read properties of null (reading 'offset')"
    // in _processServerSubs. Pinned at the wire level in tests/channels.rs
    // (protobuf_connect_reply_writes_empty_server_side_subscription_results).
    test('server-side subscriptions from the subs claim, one entry empty', TEST, async () => {
      const news = uniqueChannel(`news_${protocol.name}`);
      const alerts = uniqueChannel(`alerts_${protocol.name}`);
      const client = pool.client(URL, {
        // Centrifugo reads `channels` only when a token has no `subs`: both go in `subs`.
        token: connToken('frank', { subs: { [news]: {}, [alerts]: { data: { welcome: true } } } }),
      });
      const serverSubscribed = record(client, 'subscribed');
      const publications = record(client, 'publication');
      const connected = nextEvent(client, 'connected', WAIT, 'connected');
      client.connect();
      await connected;
      // 'subscribed' events are emitted right after 'connected'.
      const until = Date.now() + 2_000;
      while (serverSubscribed.length < 2 && Date.now() < until) {
        await sleep(20);
      }
      const channels = serverSubscribed.map((ctx) => ctx.channel).sort();
      assert.deepEqual(channels, [alerts, news].sort(), 'a server-side subscribed event per claimed channel');
      const alertsCtx = serverSubscribed.find((ctx) => ctx.channel === alerts);
      assert.deepEqual(protocol.decode(alertsCtx.data), { welcome: true }, 'subs data reaches the subscribed event');

      // Another client publishes into `news` (clients may publish at the top level).
      const other = pool.client(URL, { token: connToken('grace') });
      const otherConnected = nextEvent(other, 'connected', WAIT, 'publisher connected');
      other.connect();
      await otherConnected;
      let got = nextEvent(client, 'publication', 5_000, 'server-side publication in news');
      await withTimeout(other.publish(news, protocol.encode({ headline: 1 })), 5_000, 'client publish reply');
      let ctx = await got;
      assert.equal(ctx.channel, news);
      assert.deepEqual(protocol.decode(ctx.data), { headline: 1 });
      assert.equal(ctx.info?.user, 'grace');

      // The HTTP API publishes into `alerts`.
      got = nextEvent(client, 'publication', 5_000, 'server-side publication in alerts');
      await apiPublish(alerts, { level: 'high' });
      ctx = await got;
      assert.equal(ctx.channel, alerts);
      assert.deepEqual(protocol.decode(ctx.data), { level: 'high' });
      assert.equal(publications.length, 2);
    });
  });
}
