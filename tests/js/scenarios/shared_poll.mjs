// centrifuge-js (JSON and Protobuf builds) shared poll subscriptions
// (Centrifugo v6.9): a client subscribes to a shared_poll channel, tracks
// keys with backend-signed batches (getSignature), gets each key's data
// from the backend's shared_poll_refresh answers and then its changes;
// untracked keys stop; a batch with a bad signature is refused with 103;
// `shared_poll_publish` through the HTTP API (of another gateway than the
// client's, on NATS) reaches the key's trackers at once.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/shared_poll.rs against natsgate (two gateways on NATS, and the
// embedded broker) and against Centrifugo v6.9.1, with, besides TOKEN_SECRET:
//   GATEWAY_URLS  ws:// URL the clients use
//   API_URL       http://.../api (another gateway than the clients' on NATS); API_KEY its key
//   BACKEND_URL   http://... of tests/js/shared_poll_backend.mjs
//   SP_SECRET     the shared poll HMAC secret
//   POLL_NS       a versionless shared_poll namespace (refresh_interval 1s)
//   PUB_NS        a versioned one with publish_enabled

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { API_URL = '', API_KEY = '', BACKEND_URL = '', SP_SECRET = '', POLL_NS = '', PUB_NS = '' } = process.env;
if (!API_URL || !API_KEY || !BACKEND_URL || !SP_SECRET || !POLL_NS || !PUB_NS) {
  throw new Error('run with `cargo test --release --test shared_poll`');
}
const TEST = { timeout: 25_000 };
const WAIT = 8_000;

async function post(url, body, headers = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(response.status, 200, `${url} answered HTTP ${response.status}`);
  return response.json();
}

const backend = (path, body) => post(`${BACKEND_URL}/${path}`, body);

async function api(method, params) {
  const body = await post(`${API_URL}/${method}`, params, { 'X-API-Key': API_KEY });
  assert.ok(body.result, `${method} failed: ${JSON.stringify(body)}`);
  return body.result;
}

/** The backend's signature of a key batch (Centrifugo's track_signature.go). */
function sign(channel, keys, user, { iat = Math.floor(Date.now() / 1000), expiry = iat + 3600 } = {}) {
  const keysHash = crypto.createHash('sha256').update(keys.join('\0')).digest('hex');
  const payload = [String(iat), String(expiry), user, channel, keysHash].join('\0');
  const mac = crypto.createHmac('sha256', SP_SECRET).update(payload).digest('hex');
  return `${iat}:${expiry}:${mac}`;
}

/** The updates a subscription got, and a bounded wait for one that matches. */
function recorder(sub, protocol) {
  const updates = [];
  const waiters = [];
  sub.on('update', (ctx) => {
    updates.push({
      key: ctx.key,
      removed: !!ctx.removed,
      version: ctx.version,
      data: ctx.removed || ctx.data == null ? null : protocol.decode(ctx.data),
    });
    waiters.splice(0).forEach((w) => w());
  });
  const until = (check, what) =>
    withTimeout(
      (async () => {
        while (!updates.some(check)) await new Promise((resolve) => waiters.push(resolve));
      })(),
      WAIT,
      `${what} (updates ${JSON.stringify(updates)})`,
    );
  return { updates, until };
}

for (const protocol of PROTOCOLS) {
  describe(`shared poll (${protocol.name})`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    async function subscribed(user, channel) {
      const client = pool.client(GATEWAY_URLS[0], { token: connToken(user) });
      const sub = client.newSharedPollSubscription(channel, {
        getSignature: async ({ keys }) => ({ keys, signature: sign(channel, keys, user) }),
      });
      sub.on('error', () => {});
      const ready = nextEvent(sub, 'subscribed', WAIT, `subscribed to ${channel}`);
      sub.subscribe();
      client.connect();
      await ready;
      return { client, sub };
    }

    test('tracked keys get the backend data and its changes; untracked keys stop', TEST, async () => {
      const channel = uniqueChannel(`${POLL_NS}:items`);
      await backend('set', { channel, key: 'k1', data: { n: 1 } });
      await backend('set', { channel, key: 'k2', data: { n: 2 } });
      const { sub } = await subscribed('alice', channel);
      const seen = recorder(sub, protocol);
      sub.track(['k1', 'k2']);
      await seen.until((u) => u.key === 'k1' && u.data?.n === 1, 'k1 from the backend');
      await seen.until((u) => u.key === 'k2' && u.data?.n === 2, 'k2 from the backend');
      await backend('set', { channel, key: 'k1', data: { n: 3 } });
      await seen.until((u) => u.key === 'k1' && u.data?.n === 3, 'the change of k1 at the next poll');
      // Every update carries a version that grows per key.
      const versions = seen.updates.filter((u) => u.key === 'k1').map((u) => Number(u.version));
      assert.ok(versions.every((v, i) => v > 0 && (i === 0 || v > versions[i - 1])), `k1 versions ${versions}`);

      sub.untrack(['k2']);
      await backend('set', { channel, key: 'k2', data: { n: 9 } });
      await backend('set', { channel, key: 'k1', data: { n: 4 } });
      // k1 and k2 are polled in one request: once k1's change is here, k2's would be too.
      await seen.until((u) => u.key === 'k1' && u.data?.n === 4, 'the next change of k1');
      assert.ok(!seen.updates.some((u) => u.key === 'k2' && u.data?.n === 9), `k2 untracked: ${JSON.stringify(seen.updates)}`);

      await backend('remove', { channel, key: 'k1' });
      await seen.until((u) => u.key === 'k1' && u.removed, 'the removal of k1');
    });

    test('a batch with a bad signature is refused with 103', TEST, async () => {
      const channel = uniqueChannel(`${POLL_NS}:items`);
      await backend('set', { channel, key: 'k1', data: { n: 1 } });
      const { sub } = await subscribed('bob', channel);
      const seen = recorder(sub, protocol);
      // Signed for another user: the signature does not cover this connection.
      const refused = nextEvent(sub, 'error', WAIT, 'the track error');
      sub.track([{ key: 'k1', version: 0 }], sign(channel, ['k1'], 'mallory'));
      const ctx = await refused;
      assert.equal(ctx.type, 'track');
      assert.equal(ctx.error.code, 103, JSON.stringify(ctx.error));
      // Signed right: tracked.
      sub.track([{ key: 'k1', version: 0 }], sign(channel, ['k1'], 'bob'));
      await seen.until((u) => u.key === 'k1' && u.data?.n === 1, 'k1 once signed right');
    });

    test('shared_poll_publish reaches the trackers of the key', TEST, async () => {
      const channel = uniqueChannel(`${PUB_NS}:items`);
      await backend('set', { channel, key: 'p1', data: { n: 1 }, version: 1 });
      const { sub } = await subscribed('carol', channel);
      const seen = recorder(sub, protocol);
      sub.track(['p1']);
      await seen.until((u) => u.key === 'p1' && u.data?.n === 1 && Number(u.version) === 1, 'p1 version 1 from the backend');
      // The backend keeps version 1: version 5 can only come from the publish.
      await api('shared_poll_publish', { channel, key: 'p1', version: 5, data: { n: 5 } });
      await seen.until((u) => u.key === 'p1' && u.data?.n === 5 && Number(u.version) === 5, 'the published version 5');
      // An older version is not pushed.
      await api('shared_poll_publish', { channel, key: 'p1', version: 4, data: { n: 4 } });
      await api('shared_poll_publish', { channel, key: 'p1', version: 6, data: { n: 6 } });
      await seen.until((u) => u.key === 'p1' && u.data?.n === 6, 'the published version 6');
      assert.ok(!seen.updates.some((u) => u.data?.n === 4), `version 4 after 5: ${JSON.stringify(seen.updates)}`);
    });
  });
}
