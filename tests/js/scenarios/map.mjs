// centrifuge-js (JSON and Protobuf builds) map subscriptions (Centrifugo
// v6.8+): a client loads a map channel's state page by page (more keys than
// one page), then follows changes made through the HTTP API and its own
// publish/remove; an ephemeral map has state and live changes but no
// recovery; and (when KILL_PID is set) the state outlives a SIGKILLed
// gateway: the client, moved by a TCP balancer to the other gateway,
// recovers the changes made while it was away and ends with the same state
// as the server, nothing lost.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/map_subscriptions.rs, against natsgate (two gateways on NATS) and
// against Centrifugo v6.9.1 (no KILL_*), with, besides TOKEN_SECRET:
//   GATEWAY_URLS   ws:// URL the clients use (another gateway than API_URL's)
//   API_URL        http://.../api; API_KEY its key
//   MAP_NS         a persistent map namespace that lets subscribers publish and remove
//   EPH_NS         an ephemeral map namespace
//   KILL_ADDR, KILL_PID, SURVIVOR_ADDR  optional: the gateway to kill and the other one

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { API_URL = '', API_KEY = '', MAP_NS = '', EPH_NS = '', KILL_ADDR = '', SURVIVOR_ADDR = '' } = process.env;
const KILL_PID = Number(process.env.KILL_PID || 0);
if (!API_URL || !API_KEY || !MAP_NS || !EPH_NS) {
  throw new Error('run with `cargo test --release --test map_subscriptions` (needs API_URL, API_KEY, MAP_NS, EPH_NS)');
}
const TEST = { timeout: 20_000 };
const WAIT = 8_000;
/** More keys than one state page (100 by default), so paging is exercised. */
const KEYS = 130;
const keyOf = (i) => `k${String(i).padStart(3, '0')}`;

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

/** The client's view of the map: replaced on 'sync', changed on 'update'. */
function mirror(sub, protocol) {
  const state = new Map();
  const updates = [];
  const waiters = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sub.on('sync', (ctx) => {
    state.clear();
    for (const e of ctx.entries) state.set(e.key, protocol.decode(e.data));
    wake();
  });
  sub.on('update', (ctx) => {
    updates.push({ key: ctx.key, removed: !!ctx.removed, data: ctx.removed ? undefined : protocol.decode(ctx.data) });
    if (ctx.removed) state.delete(ctx.key);
    else state.set(ctx.key, protocol.decode(ctx.data));
    wake();
  });
  /** Resolves once `check()` holds (bounded by WAIT). */
  const until = (check, what) =>
    withTimeout(
      (async () => {
        while (!check()) await new Promise((resolve) => waiters.push(resolve));
      })(),
      WAIT,
      `${what} (state ${JSON.stringify([...state])}, updates ${JSON.stringify(updates)})`,
    );
  return { state, updates, until };
}

/** The server's state, as the HTTP API reads it. */
async function serverState(channel) {
  const result = await api('map_read_state', { channel, limit: -1 });
  return new Map((result.entries || []).map((e) => [e.key, e.data]));
}

/** A TCP balancer sending each connection to the first backend that accepts. */
async function startBalancer(backends) {
  const sockets = new Set();
  const hostPort = (addr) => ({ host: addr.slice(0, addr.lastIndexOf(':')), port: Number(addr.slice(addr.lastIndexOf(':') + 1)) });
  const server = net.createServer((inbound) => {
    sockets.add(inbound);
    inbound.pause();
    const attempt = (i) => {
      if (i === backends.length) return inbound.destroy();
      const outbound = net.connect(hostPort(backends[i]));
      sockets.add(outbound);
      outbound.once('error', () => (outbound.connected ? inbound.destroy() : attempt(i + 1)));
      outbound.once('connect', () => {
        outbound.connected = true;
        inbound.pipe(outbound);
        outbound.pipe(inbound);
        inbound.resume();
        const close = () => [inbound, outbound].forEach((s) => (s.destroy(), sockets.delete(s)));
        inbound.on('close', close).on('error', close);
        outbound.on('close', close);
      });
    };
    attempt(0);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/connection/websocket`,
    close: () => (sockets.forEach((s) => s.destroy()), server.close()),
  };
}

let killed = false;

for (const protocol of PROTOCOLS) {
  describe(`map subscriptions (${protocol.name})`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('the state arrives page by page, then API and client changes arrive live', TEST, async () => {
      const channel = uniqueChannel(`${MAP_NS}:state_${protocol.name}`);
      for (let i = 0; i < KEYS; i++) await api('map_publish', { channel, key: keyOf(i), data: { n: i } });
      const client = pool.client(GATEWAY_URLS[0], { token: connToken('alice') });
      const sub = client.newMapSubscription(channel);
      const view = mirror(sub, protocol);
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      sub.subscribe();
      client.connect();
      const ctx = await subscribed;
      assert.equal(ctx.recoverable, true, `a persistent map is recoverable: ${JSON.stringify(ctx)}`);
      await view.until(() => view.state.size === KEYS, `${KEYS} keys in the state`);
      for (let i = 0; i < KEYS; i++) assert.deepEqual(view.state.get(keyOf(i)), { n: i });

      // Changes through the API (another gateway), then the client's own.
      await api('map_publish', { channel, key: keyOf(0), data: { n: 1000 } });
      const removed = await api('map_remove', { channel, key: keyOf(1) });
      assert.equal(typeof removed.offset, 'number', JSON.stringify(removed));
      const missing = await api('map_remove', { channel, key: 'no-such-key' });
      assert.equal(missing.suppressed, true, `removing a missing key is suppressed: ${JSON.stringify(missing)}`);
      assert.equal(missing.suppress_reason, 'key_not_found');
      await sub.publish('mine', protocol.encode({ n: -1 }));
      await view.until(() => view.updates.length === 3, 'three live updates');
      await sub.remove('mine');
      await view.until(() => view.updates.length === 4, 'four live updates');
      assert.deepEqual(view.updates, [
        { key: keyOf(0), removed: false, data: { n: 1000 } },
        { key: keyOf(1), removed: true, data: undefined },
        { key: 'mine', removed: false, data: { n: -1 } },
        { key: 'mine', removed: true, data: undefined },
      ]);
      const server = await serverState(channel);
      assert.equal(server.size, KEYS - 1);
      assert.deepEqual(new Map([...view.state].sort()), new Map([...server].sort()), 'client and server agree');
      assert.equal((await api('map_stats', { channel })).num_keys, KEYS - 1);
    });

    test('an ephemeral map has state and live changes, no recovery', TEST, async () => {
      const channel = uniqueChannel(`${EPH_NS}:eph_${protocol.name}`);
      for (let i = 0; i < 3; i++) await api('map_publish', { channel, key: keyOf(i), data: { n: i } });
      const client = pool.client(GATEWAY_URLS[0], { token: connToken('bob') });
      const sub = client.newMapSubscription(channel);
      const view = mirror(sub, protocol);
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      sub.subscribe();
      client.connect();
      const ctx = await subscribed;
      assert.equal(ctx.recoverable, false, `an ephemeral map is not recoverable: ${JSON.stringify(ctx)}`);
      await view.until(() => view.state.size === 3, 'three keys in the state');
      await api('map_publish', { channel, key: 'late', data: { n: 9 } });
      await view.until(() => view.state.get('late')?.n === 9, 'the live change');
      // Clients may not write into this namespace.
      await assert.rejects(sub.publish('x', protocol.encode({ n: 0 })), (e) => e.code === 103);
    });

    test('the state outlives a SIGKILLed gateway and the client resyncs on the other one', { ...TEST, skip: !KILL_PID || protocol.name !== 'json' }, async () => {
      assert.ok(!killed, 'one kill per run: the JSON build takes it');
      killed = true;
      const balancer = await startBalancer([KILL_ADDR, SURVIVOR_ADDR]);
      try {
        const channel = uniqueChannel(`${MAP_NS}:kill_${protocol.name}`);
        for (let i = 0; i < 5; i++) await api('map_publish', { channel, key: keyOf(i), data: { n: i } });
        const client = pool.client(balancer.url, { token: connToken('carol') });
        const sub = client.newMapSubscription(channel);
        const view = mirror(sub, protocol);
        sub.subscribe();
        client.connect();
        await view.until(() => view.state.size === 5, 'five keys before the kill');

        const lost = nextEvent(client, 'connecting', WAIT, 'the client noticing its gateway is gone');
        const back = new Promise((resolve) => sub.on('subscribed', (ctx) => ctx.wasRecovering && resolve(ctx)));
        process.kill(KILL_PID, 'SIGKILL');
        await lost;
        // Changes while the client is away, through the surviving gateway.
        await api('map_publish', { channel, key: keyOf(0), data: { n: 100 } });
        await api('map_remove', { channel, key: keyOf(1) });
        await api('map_publish', { channel, key: 'new', data: { n: 7 } });
        const ctx = await withTimeout(back, WAIT, 'resubscribed on the other gateway');
        assert.equal(ctx.recovered, true, `recovered from the stream: ${JSON.stringify(ctx)}`);
        const server = await serverState(channel);
        assert.equal(server.size, 5);
        await view.until(
          () => JSON.stringify([...view.state].sort()) === JSON.stringify([...server].sort()),
          'the client state equal to the server state',
        );
      } finally {
        balancer.close();
      }
    });
  });
}
