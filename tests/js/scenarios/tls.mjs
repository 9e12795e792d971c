// centrifuge-js (JSON and Protobuf builds) over wss:// and the HTTP API over
// https:// against a gateway serving TLS (NATSGATE_TLS) with a certificate
// from a CA the Rust test made; node trusts that CA only through
// NODE_EXTRA_CA_CERTS, so a handshake that does not verify fails the test.
//
// Run by tests/nats_security.rs, which sets GATEWAY_URLS (one wss:// URL),
// TOKEN_SECRET, API_URL (https://.../api) and API_KEY.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel } from '../helpers.mjs';

const { API_URL = '', API_KEY = '' } = process.env;
if (!API_URL.startsWith('https://') || !API_KEY || !GATEWAY_URLS[0].startsWith('wss://')) {
  throw new Error('run with `cargo test --release --test nats_security` (needs wss:// GATEWAY_URLS, https:// API_URL, API_KEY)');
}

const TEST = { timeout: 10_000 };
const WAIT = 5_000;

for (const protocol of PROTOCOLS) {
  describe(`over TLS (${protocol.name})`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('connects over wss://, subscribes and receives an API publication sent over https://', TEST, async () => {
      const client = pool.client(GATEWAY_URLS[0], { token: connToken('tls-user') });
      const connected = nextEvent(client, 'connected', WAIT, 'connected over wss://');
      client.connect();
      const ctx = await connected;
      assert.equal(ctx.transport, 'websocket');
      const channel = uniqueChannel('tls');
      const sub = client.newSubscription(channel);
      const subscribed = nextEvent(sub, 'subscribed', WAIT);
      sub.subscribe();
      await subscribed;
      const publication = nextEvent(sub, 'publication', WAIT, 'the API publication');
      const response = await fetch(`${API_URL}/publish`, {
        method: 'POST',
        headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel, data: { over: 'https' } }),
      });
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.error, undefined, JSON.stringify(body));
      const got = await publication;
      assert.deepEqual(protocol.decode(got.data), { over: 'https' });
    });
  });
}

test('a plain ws:// client on the TLS port does not connect', TEST, async () => {
  const pool = new ClientPool(PROTOCOLS[0]);
  try {
    const client = pool.client(GATEWAY_URLS[0].replace('wss://', 'ws://'), { token: connToken('plain') });
    const connected = nextEvent(client, 'connected', 1_500, 'a plain connection').then(() => 'connected', () => 'refused');
    client.connect();
    assert.equal(await connected, 'refused');
  } finally {
    pool.disconnectAll();
  }
});
