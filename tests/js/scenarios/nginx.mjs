// centrifuge-js and cent.js through nginx (deploy/nginx/natsgate.conf) in
// front of two gateways on one nats-server.
//
// Run by tests/nginx.rs, which sets:
//   GATEWAY_URLS  the one ws:// URL of nginx's /connection/websocket
//   API_URL       http://<nginx>/api
//   API_KEY       the gateways' NATSGATE_API_KEY
//   TOKEN_SECRET  their NATSGATE_TOKEN_HMAC_SECRET_KEY
//   METRICS_URLS  comma-separated /metrics URLs of the two gateways (their
//                 internal ports, which nginx does not expose)

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import centjs from 'cent.js';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { CentClient } = centjs;
const [url] = GATEWAY_URLS;
const metricsUrls = (process.env.METRICS_URLS || '').split(',').filter(Boolean);
const pool = new ClientPool(PROTOCOLS[0]);
after(() => pool.disconnectAll());

/** natsgate_client_connections on one gateway (summed over labels). */
async function connections(metricsUrl) {
  const text = await (await fetch(metricsUrl)).text();
  return text
    .split('\n')
    .filter((line) => /^natsgate_client_connections(\{| )/.test(line))
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/).pop()), 0);
}

test('two SDK clients through nginx land on both gateways and get an API publication sent through nginx', async () => {
  assert.equal(metricsUrls.length, 2, 'METRICS_URLS names the two gateways');
  const channel = uniqueChannel('nginx');
  const subs = [];
  for (const user of ['alice', 'bob']) {
    const client = pool.client(url, { token: connToken(user) });
    const sub = client.newSubscription(channel);
    const subscribed = nextEvent(sub, 'subscribed', 5000, `${user} subscribed through nginx`);
    client.connect();
    sub.subscribe();
    await subscribed;
    subs.push(sub);
  }
  // least_conn sends the second WebSocket to the idle upstream: one client
  // per gateway proves both upstreams are in use and that the publication
  // below crosses NATS to reach one of them.
  const counts = await Promise.all(metricsUrls.map(connections));
  assert.deepEqual(counts, [1, 1], `connections per gateway behind nginx: ${counts}`);

  const received = subs.map((sub, i) => nextEvent(sub, 'publication', 5000, `publication for client ${i}`));
  const api = new CentClient({ url: process.env.API_URL, apiKey: process.env.API_KEY });
  const result = await withTimeout(api.publish({ channel, data: { via: 'nginx' } }), 5000, 'publish through nginx');
  assert.ok(result !== undefined, 'cent.js publish returned a result');
  for (const ctx of await Promise.all(received)) {
    assert.deepEqual(ctx.data, { via: 'nginx' });
  }
});
