// centrifuge-js over HTTP-streaming (JSON and Protobuf builds) and SSE
// (JSON), through a round-robin HTTP balancer in front of two gateways on
// one nats-server: each request (the stream, every /emulation POST) goes to
// the next gateway, so commands reach the gateway that does not hold the
// session about half the time and travel over NATS to the one that does.
// Also with the stream pinned on A and every emulation request on B.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/transports_js.rs, which sets, besides TOKEN_SECRET and GATEWAY_URLS:
//   HTTP_A, HTTP_B  http:// base URLs of the two gateways
//   PID_A           gateway A's process id (the last test kills it)
//   API_KEY         the gateways' HTTP API key
//   CHANNEL_NS      a namespace with history, recovery, presence

import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { EventSource } from 'eventsource';
import { ClientPool, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { HTTP_A = '', HTTP_B = '', API_KEY = '', CHANNEL_NS = '' } = process.env;
const PID_A = Number(process.env.PID_A || 0);
if (!HTTP_A || !HTTP_B || !API_KEY || !CHANNEL_NS || !PID_A) {
  throw new Error('run with `cargo test --release --test transports_js`');
}
const TEST = { timeout: 20_000 };
const WAIT = 5_000;

/**
 * A round-robin HTTP/1.1 balancer: every request goes to the next backend
 * (falling over to the others when one refuses the connection); bodies and
 * streaming responses pass through; a client going away aborts the upstream
 * request. `pin(path)` may name the backend for a path instead.
 */
function balancer(backends, pin = () => null) {
  let next = 0;
  const counts = { emulationCross: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => attempt(0));
    function attempt(tries, fallback) {
      const pinned = fallback !== undefined ? fallback % backends.length : pin(req.url);
      const target = pinned !== null ? backends[pinned] : backends[next++ % backends.length];
      const url = new URL(target);
      const upstream = http.request(
        { host: url.hostname, port: url.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode, up.headers);
          up.pipe(res);
          // The backend died mid-response: so does the client's response.
          up.on('close', () => {
            if (!up.complete) res.destroy();
          });
        },
      );
      res.on('close', () => upstream.destroy());
      upstream.on('error', () => {
        if (res.headersSent) return res.destroy();
        if (tries + 1 < backends.length) return attempt(tries + 1, (pinned ?? 0) + 1);
        res.writeHead(502);
        res.end();
      });
      upstream.end(Buffer.concat(chunks));
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, counts, url: `http://127.0.0.1:${server.address().port}` })));
}

/** The transports under test: name, SDK build, endpoint path. */
const TRANSPORTS = [
  { name: 'http_stream json', transport: 'http_stream', protocol: PROTOCOLS[0], path: '/connection/http_stream' },
  { name: 'http_stream protobuf', transport: 'http_stream', protocol: PROTOCOLS[1], path: '/connection/http_stream' },
  { name: 'sse json', transport: 'sse', protocol: PROTOCOLS[0], path: '/connection/sse' },
];

/** API call on gateway B. */
async function api(method, params) {
  const response = await fetch(`${HTTP_B}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.ok(!body.error, `${method} failed: ${JSON.stringify(body)}`);
  return body.result;
}

/** A client of `t` whose stream goes to `streamBase` and emulation to `emulationBase`. */
function client(pool, t, streamBase, emulationBase, options = {}) {
  return pool.client([{ transport: t.transport, endpoint: `${streamBase}${t.path}` }], {
    websocket: null,
    fetch: globalThis.fetch,
    readableStream: globalThis.ReadableStream,
    eventsource: EventSource,
    emulationEndpoint: `${emulationBase}/emulation`,
    ...options,
  });
}

/** Records publications of `sub` as decoded data; `waitFor(n)` bounded by WAIT. */
function record(sub, protocol) {
  const got = [];
  const waiters = [];
  sub.on('publication', (ctx) => {
    got.push({ data: protocol.decode(ctx.data), offset: ctx.offset });
    for (const w of waiters.splice(0)) w();
  });
  got.waitFor = (count, what) =>
    withTimeout(
      (async () => {
        while (got.length < count) await new Promise((resolve) => waiters.push(resolve));
        return got.slice();
      })(),
      WAIT,
      `${what} (have ${got.length})`,
    );
  return got;
}

let lb;
let pinned;
let failover;
before(async () => {
  lb = await balancer([HTTP_A, HTTP_B]);
  // The stream always on A, every emulation request on B.
  pinned = await balancer([HTTP_A, HTTP_B], (path) => (path.startsWith('/emulation') ? 1 : 0));
  // The stream on A while it lives, emulation round-robin.
  failover = await balancer([HTTP_A, HTTP_B], (path) => (path.startsWith('/emulation') ? null : 0));
});
after(() => {
  for (const b of [lb, pinned, failover]) {
    b.server.closeAllConnections();
    b.server.close();
  }
});

for (const t of TRANSPORTS) {
  describe(`centrifuge-js over ${t.name}`, () => {
    const pool = new ClientPool(t.protocol);
    afterEach(() => pool.disconnectAll());

    for (const [via, base] of [['a round-robin balancer', () => lb.url], ['stream on A, emulation on B', () => pinned.url]]) {
      test(`connect, subscribe, publish, presence, history through ${via}`, TEST, async () => {
        const channel = uniqueChannel(`${CHANNEL_NS}:t`);
        const c = client(pool, t, base(), base(), { token: connToken('alice') });
        const connected = nextEvent(c, 'connected', WAIT, 'connected');
        c.connect();
        const ctx = await connected;
        assert.equal(ctx.transport, t.transport);
        const sub = c.newSubscription(channel);
        const got = record(sub, t.protocol);
        const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
        sub.subscribe();
        await subscribed;
        // Replies in order, nothing lost: 30 publishes, one after another.
        for (let n = 0; n < 30; n++) await sub.publish(t.protocol.encode({ n }));
        const received = await got.waitFor(30, '30 own publications');
        assert.deepEqual(received.map((p) => p.data.n), [...Array(30).keys()]);
        // And from the API.
        await api('publish', { channel, data: { n: 30 } });
        assert.equal((await got.waitFor(31, 'the API publication'))[30].data.n, 30);
        const presence = await sub.presence();
        const clients = Object.values(presence.clients);
        assert.equal(clients.length, 1);
        assert.equal(clients[0].user, 'alice');
        const stats = await sub.presenceStats();
        assert.deepEqual([stats.numClients, stats.numUsers], [1, 1]);
        const history = await sub.history({ limit: -1 });
        assert.equal(history.publications.length, 31);
        assert.deepEqual(history.publications.map((p) => t.protocol.decode(p.data).n), [...Array(31).keys()]);
      });
    }

    test('concurrent commands over emulation all get their replies', TEST, async () => {
      const channel = uniqueChannel(`${CHANNEL_NS}:c`);
      const c = client(pool, t, lb.url, lb.url, { token: connToken('carol') });
      const sub = c.newSubscription(channel);
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      sub.subscribe();
      c.connect();
      await subscribed;
      const got = record(sub, t.protocol);
      await Promise.all([...Array(20).keys()].map((n) => sub.publish(t.protocol.encode({ n }))));
      const received = await got.waitFor(20, '20 concurrent publications');
      assert.deepEqual(received.map((p) => p.data.n).sort((a, b) => a - b), [...Array(20).keys()]);
    });

    test('token refresh over emulation keeps the connection', TEST, async () => {
      let refreshed = 0;
      const c = client(pool, t, lb.url, lb.url, {
        token: connToken('dave', { expIn: 2 }),
        getToken: async () => {
          refreshed++;
          return connToken('dave', { expIn: 60 });
        },
      });
      const connected = nextEvent(c, 'connected', WAIT, 'connected');
      c.connect();
      await connected;
      let disconnected = null;
      c.on('disconnected', (ctx) => { disconnected = ctx; });
      c.on('connecting', (ctx) => { disconnected = ctx; });
      // Past the first token's expiry and the close delay.
      await withTimeout(
        (async () => {
          while (refreshed === 0) await new Promise((r) => setTimeout(r, 100));
        })(),
        WAIT,
        'a token refresh',
      );
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(disconnected, null, `the connection survived its first token: ${JSON.stringify(disconnected)}`);
      assert.equal(c.state, 'connected');
      assert.ok(refreshed >= 1);
    });
  });
}

describe('losing the gateway that holds the stream', () => {
  const protocol = PROTOCOLS[0];
  const pool = new ClientPool(protocol);
  afterEach(() => pool.disconnectAll());

  test('the client reconnects through the balancer and recovers what it missed', TEST, async () => {
    const t = TRANSPORTS[0];
    const channel = uniqueChannel(`${CHANNEL_NS}:k`);
    const c = client(pool, t, failover.url, failover.url, { token: connToken('erin') });
    const sub = c.newSubscription(channel, { recoverable: true });
    const got = record(sub, protocol);
    const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed on A');
    sub.subscribe();
    c.connect();
    await subscribed;
    await api('publish', { channel, data: { n: 0 } });
    await got.waitFor(1, 'the first publication');
    const lost = nextEvent(c, 'connecting', WAIT, 'the client noticing A is gone');
    process.kill(PID_A, 'SIGKILL');
    await lost;
    for (let n = 1; n <= 3; n++) await api('publish', { channel, data: { n } });
    const ctx = await nextEvent(sub, 'subscribed', 10_000, 'subscribed again on B');
    assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
    assert.equal(ctx.recovered, true, JSON.stringify(ctx));
    const received = await got.waitFor(4, 'the missed publications');
    assert.deepEqual(received.map((p) => p.data.n), [0, 1, 2, 3]);
  });
});
