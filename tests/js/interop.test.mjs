// centrifuge-js (JSON and Protobuf builds) against natsgate, checking the
// behaviour an application sees with Centrifugo. Run by tests/sdk_js.rs.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientPool,
  GATEWAY_URLS,
  PROTOCOLS,
  connToken,
  nextEvent,
  uniqueChannel,
  withTimeout,
} from './helpers.mjs';

const TEST = { timeout: 10_000 };
const WAIT = 8_000;
const [URL_A] = GATEWAY_URLS;
const URL_B = GATEWAY_URLS[1] ?? GATEWAY_URLS[0];
const ACROSS = GATEWAY_URLS.length > 1 ? 'across two gateways' : 'on one gateway';

for (const protocol of PROTOCOLS) {
  describe(`centrifuge-js ${protocol.name}`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('connects with a JWT and gets a client id', TEST, async () => {
      const client = pool.client(URL_A, { token: connToken('alice') });
      const connected = nextEvent(client, 'connected', WAIT);
      client.connect();
      const ctx = await connected;
      assert.equal(typeof ctx.client, 'string');
      assert.notEqual(ctx.client, '', 'connect reply must carry a client id');
      assert.equal(ctx.transport, 'websocket');
      assert.equal(client.state, 'connected');
    });

    test(`publication reaches subscribers ${ACROSS}`, TEST, async () => {
      const channel = uniqueChannel(`interop_${protocol.name}`);
      const a = pool.client(URL_A, { token: connToken('alice') });
      const b = pool.client(URL_B, { token: connToken('bob') });
      const subA = a.newSubscription(channel);
      const subB = b.newSubscription(channel);
      const subscribed = Promise.all([
        nextEvent(subA, 'subscribed', WAIT, 'A subscribed'),
        nextEvent(subB, 'subscribed', WAIT, 'B subscribed'),
      ]);
      // Subscribing before connecting: the SDK sends connect and subscribe in one frame.
      subA.subscribe();
      subB.subscribe();
      a.connect();
      b.connect();
      await subscribed;

      const payload = { text: 'hello', n: 42, nested: { ok: true } };
      const atB = nextEvent(subB, 'publication', 5_000, 'publication at B');
      const atA = nextEvent(subA, 'publication', 5_000, 'publication echoed to publisher A');
      await withTimeout(subA.publish(protocol.encode(payload)), 5_000, 'publish reply');

      const got = await atB;
      assert.equal(got.channel, channel);
      assert.deepEqual(protocol.decode(got.data), payload);
      assert.deepEqual(protocol.decode((await atA).data), payload);
    });

    test('expired token: error 109, then getToken supplies a fresh one', TEST, async () => {
      let getTokenCalls = 0;
      const client = pool.client(URL_A, {
        token: connToken('carol', { expIn: -60 }),
        getToken: async () => {
          getTokenCalls += 1;
          return connToken('carol');
        },
      });
      const errors = [];
      client.on('error', (ctx) => errors.push(ctx));
      const connected = nextEvent(client, 'connected', WAIT, 'connected with refreshed token');
      client.connect();
      await connected;
      assert.ok(getTokenCalls >= 1, 'getToken must be called after error 109');
      assert.ok(
        errors.some((e) => e.type === 'connect' && e.error.code === 109),
        `expected a connect error 109, got ${JSON.stringify(errors)}`,
      );
    });

    test('expired token without getToken: error 109, then disconnected', TEST, async () => {
      const client = pool.client(URL_A, { token: connToken('dave', { expIn: -60 }) });
      const errors = [];
      client.on('error', (ctx) => errors.push(ctx));
      const disconnected = nextEvent(client, 'disconnected', WAIT);
      client.connect();
      await disconnected;
      assert.equal(client.state, 'disconnected');
      assert.ok(
        errors.some((e) => e.type === 'connect' && e.error.code === 109),
        `expected a connect error 109, got ${JSON.stringify(errors)}`,
      );
    });

    test('invalid token signature: disconnect 3500 and no reconnect', TEST, async () => {
      const client = pool.client(URL_A, { token: connToken('eve', { secret: 'not-the-gateway-secret' }) });
      const disconnected = nextEvent(client, 'disconnected', WAIT);
      client.connect();
      const ctx = await disconnected;
      assert.equal(ctx.code, 3500, `expected disconnect 3500, got ${JSON.stringify(ctx)}`);
      assert.equal(client.state, 'disconnected');

      // A reconnect would start within maxReconnectDelay (1 s): watching
      // longer than that is the assertion.
      let reconnects = 0;
      client.on('connecting', () => { reconnects += 1; });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(reconnects, 0, 'the SDK must not reconnect after 3500');
      assert.equal(client.state, 'disconnected');
    });
  });
}
