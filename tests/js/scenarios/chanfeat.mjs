// centrifuge-js (JSON and Protobuf) with issue #20's channel features: the
// personal channel (server-side subscription, single-connection mode across
// two servers) and cache recovery (`since: {}`, auto_cache_recover).
//
// Run by tests/chanfeat_sdk.rs against two natsgate gateways on NATS and
// against Centrifugo v6.9.1, with the same assertions:
//   GATEWAY_URLS   two ws:// URLs (the same one twice for Centrifugo)
//   TOKEN_SECRET   the HMAC token key
//   API_URL, API_KEY  the HTTP API (http://host:port)
// The server has namespaces `personal` (presence, history, force_recovery;
// personal channels there, single connection), `cache` (history,
// allow_subscribe_for_client, force_recovery, force_recovery_mode cache)
// and `auto` (the same with auto_cache_recover).

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const API_URL = process.env.API_URL || '';
const API_KEY = process.env.API_KEY || '';
if (!API_URL || !API_KEY) {
  throw new Error('API_URL and API_KEY must be set: run with `cargo test --release --test chanfeat_sdk`');
}
const TEST = { timeout: 20_000 };
const WAIT = 8_000;
const [URL_A, URL_B] = GATEWAY_URLS;

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
  const body = await response.json();
  assert.ok(body.result, `publish to ${channel}: ${JSON.stringify(body)}`);
}

/** Resolves with the first `event` from `emitter` whose ctx.channel is `channel`. */
function eventOn(emitter, event, channel, what) {
  let handler;
  const promise = new Promise((resolve) => {
    handler = (ctx) => {
      if (ctx.channel === channel) resolve(ctx);
    };
    emitter.on(event, handler);
  });
  return withTimeout(promise, WAIT, what).finally(() => emitter.removeListener(event, handler));
}

for (const protocol of PROTOCOLS) {
  describe(`channel features (${protocol.name})`, () => {
    let pool;
    afterEach(() => pool.disconnectAll());

    test('personal channel: server-side subscription, publications, single connection', TEST, async () => {
      pool = new ClientPool(protocol);
      const user = `js-${protocol.name}-${crypto.randomBytes(4).toString('hex')}`;
      const personal = `personal:#${user}`;
      const first = pool.client(URL_A, { token: connToken(user) });
      const subscribed = eventOn(first, 'subscribed', personal, 'server-side subscribed to the personal channel');
      first.connect();
      const ctx = await subscribed;
      assert.equal(ctx.recoverable, true, 'the namespace forces recovery');
      assert.equal(ctx.positioned, true);

      const publication = eventOn(first, 'publication', personal, 'publication in the personal channel');
      await apiPublish(personal, { hello: user });
      assert.deepEqual(protocol.decode((await publication).data), { hello: user });

      // A second connection of the user, on the other server, closes the first.
      const disconnected = nextEvent(first, 'disconnected', WAIT, 'first connection closed');
      const second = pool.client(URL_B, { token: connToken(user) });
      const secondSubscribed = eventOn(second, 'subscribed', personal, 'second connection subscribed');
      second.connect();
      await secondSubscribed;
      const closed = await disconnected;
      assert.equal(closed.code, 3504, `closed with connection limit: ${JSON.stringify(closed)}`);
      const toSecond = eventOn(second, 'publication', personal, 'publication on the second connection');
      await apiPublish(personal, { to: 'second' });
      assert.deepEqual(protocol.decode((await toSecond).data), { to: 'second' });
    });

    test('cache recovery: since {} gets the latest publication only', TEST, async () => {
      pool = new ClientPool(protocol);
      const channel = uniqueChannel(`cache:js-${protocol.name}`);
      for (const i of [1, 2, 3]) await apiPublish(channel, { i });
      const client = pool.client(URL_A, { token: connToken('cache-js') });
      const sub = client.newSubscription(channel, { since: {} });
      const seen = [];
      sub.on('publication', (ctx) => seen.push(protocol.decode(ctx.data)));
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      client.connect();
      sub.subscribe();
      const ctx = await subscribed;
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, true);
      const live = nextEvent(sub, 'publication', WAIT, 'live publication');
      await apiPublish(channel, { i: 4 });
      await live;
      assert.deepEqual(seen, [{ i: 3 }, { i: 4 }], 'only the latest cached publication, then live ones');
    });

    test('auto cache recover: the latest publication without asking', TEST, async () => {
      pool = new ClientPool(protocol);
      const channel = uniqueChannel(`auto:js-${protocol.name}`);
      for (const i of [1, 2]) await apiPublish(channel, { i });
      const client = pool.client(URL_B, { token: connToken('auto-js') });
      const sub = client.newSubscription(channel);
      const publication = nextEvent(sub, 'publication', WAIT, 'cached publication');
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      client.connect();
      sub.subscribe();
      const ctx = await subscribed;
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, true);
      assert.deepEqual(protocol.decode((await publication).data), { i: 2 });
    });
  });
}
