// Chaos, shortened for CI: a gateway SIGKILLed under load. centrifuge-js
// clients (JSON and Protobuf builds) reach two gateways A and B on one
// nats-server through a tiny TCP balancer (each new connection goes to the
// next gateway in turn, or to the other one when that refuses), each
// subscribed with `recoverable: true` to every channel of a history
// namespace. A backend publishes at a steady rate through the HTTP API,
// alternating between A's and B's, and retries on B when A does not answer.
// A is killed with SIGKILL in the middle; its clients reconnect through the
// balancer to B and recover. Checked against every offset whose publish got
// a success reply: every client received each exactly once, in offset
// order, and every resubscription after the kill said recovered: true.
// Offsets that were stored but whose reply was lost with A may arrive too;
// they are neither required nor counted as duplicates.
//
// Run by tests/sdk_js_recovery.rs, which starts the gateways and sets,
// besides GATEWAY_URLS (B) and TOKEN_SECRET:
//   KILL_ADDR, KILL_PID  A's host:port and process id
//   SURVIVOR_ADDR        B's host:port
//   API_URLS             A's and B's http://.../api, comma-separated; API_KEY
//   CHANNEL_NS           a namespace with history and recovery
//   LOAD_SECONDS         how long to publish (A dies half way)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ClientPool, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const list = (name) => (process.env[name] || '').split(',').map((s) => s.trim()).filter(Boolean);
const { KILL_ADDR = '', SURVIVOR_ADDR = '', API_KEY = '', CHANNEL_NS = '' } = process.env;
const KILL_PID = Number(process.env.KILL_PID || 0);
const API_URLS = list('API_URLS');
const LOAD_SECONDS = Number(process.env.LOAD_SECONDS || 6);
if (!KILL_ADDR || !SURVIVOR_ADDR || !KILL_PID || API_URLS.length !== 2 || !API_KEY || !CHANNEL_NS) {
  throw new Error('run with `cargo test --release --test sdk_js_recovery` (needs KILL_ADDR, KILL_PID, SURVIVOR_ADDR, API_URLS, API_KEY, CHANNEL_NS)');
}

const CHANNELS = 4;
const CLIENTS_PER_PROTOCOL = 4;
/** Per channel: one publish every PERIOD_MS (CHANNELS * 1000 / PERIOD_MS publications a second in all). */
const PERIOD_MS = 40;
const WAIT = 10_000;

const hostPort = (addr) => {
  const at = addr.lastIndexOf(':');
  return { host: addr.slice(0, at), port: Number(addr.slice(at + 1)) };
};

/**
 * A TCP balancer on a free port: each connection goes to the next backend
 * in turn, falling back to the other when a backend refuses. Counts the
 * connections each backend took.
 */
async function startBalancer(backends) {
  let next = 0;
  const taken = backends.map(() => 0);
  const sockets = new Set();
  const server = net.createServer((inbound) => {
    sockets.add(inbound);
    inbound.pause();
    const first = next++ % backends.length;
    const attempt = (tries) => {
      if (tries === backends.length) return inbound.destroy();
      const i = (first + tries) % backends.length;
      const outbound = net.connect(hostPort(backends[i]));
      sockets.add(outbound);
      outbound.once('error', () => {
        sockets.delete(outbound);
        if (!outbound.connected) attempt(tries + 1);
        else inbound.destroy();
      });
      outbound.once('connect', () => {
        outbound.connected = true;
        taken[i]++;
        inbound.pipe(outbound);
        outbound.pipe(inbound);
        inbound.resume();
        const close = () => {
          inbound.destroy();
          outbound.destroy();
          sockets.delete(inbound);
          sockets.delete(outbound);
        };
        inbound.on('close', close).on('error', close);
        outbound.on('close', close);
      });
    };
    attempt(0);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/connection/websocket`,
    taken,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** POSTs a publish to `apiUrl`; its `{offset}` on success, else null. */
async function publishOnce(apiUrl, channel, data) {
  try {
    const response = await fetch(`${apiUrl}/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, data }),
      signal: AbortSignal.timeout(3000),
    });
    if (response.status !== 200) return null;
    const body = await response.json();
    return body.result && typeof body.result.offset === 'number' ? body.result : null;
  } catch {
    return null;
  }
}

test('a gateway SIGKILLed under load: recovering clients lose and duplicate nothing acknowledged', { timeout: 60_000 }, async () => {
  const balancer = await startBalancer([KILL_ADDR, SURVIVOR_ADDR]);
  const pools = PROTOCOLS.map((p) => new ClientPool(p));
  try {
    const channels = Array.from({ length: CHANNELS }, (_, i) => uniqueChannel(`${CHANNEL_NS}:chaos${i}`));
    // Per client: channel -> offsets received; resubscriptions seen.
    const clients = [];
    for (const pool of pools) {
      for (let c = 0; c < CLIENTS_PER_PROTOCOL; c++) {
        const client = pool.client(balancer.url, { token: connToken(`chaos-${pool.protocol.name}-${c}`) });
        const state = { name: `${pool.protocol.name}#${c}`, got: new Map(), resubscribes: [], waiters: [] };
        const subscribed = [];
        for (const channel of channels) {
          state.got.set(channel, []);
          const sub = client.newSubscription(channel, { recoverable: true });
          let first = true;
          sub.on('subscribed', (ctx) => {
            if (!first) state.resubscribes.push({ channel, wasRecovering: ctx.wasRecovering, recovered: ctx.recovered });
            first = false;
          });
          sub.on('publication', (ctx) => {
            state.got.get(channel).push(ctx.offset);
            for (const w of state.waiters.splice(0)) w();
          });
          subscribed.push(nextEvent(sub, 'subscribed', WAIT, `${state.name} subscribed to ${channel}`));
          sub.subscribe();
        }
        client.connect();
        await Promise.all(subscribed);
        clients.push(state);
      }
    }
    const onA = balancer.taken[0];
    assert.ok(onA >= 2 && balancer.taken[1] >= 2, `clients on both gateways: ${JSON.stringify(balancer.taken)}`);

    // The backend: each channel published in turn every PERIOD_MS, through
    // A's and B's API alternately; on no success reply, once more on B.
    const acked = new Map(channels.map((ch) => [ch, []]));
    let attempts = 0;
    let failures = 0;
    let running = true;
    const publishers = channels.map(async (channel, i) => {
      let n = 0;
      while (running) {
        const started = Date.now();
        const data = { n: n++, i };
        attempts++;
        let result = await publishOnce(API_URLS[n % 2], channel, data);
        if (!result) {
          failures++;
          result = await publishOnce(API_URLS[1], channel, data);
        }
        if (result) acked.get(channel).push(result.offset);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, PERIOD_MS - (Date.now() - started))));
      }
    });
    await new Promise((resolve) => setTimeout(resolve, (LOAD_SECONDS * 1000) / 2));
    process.kill(KILL_PID, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, (LOAD_SECONDS * 1000) / 2));
    running = false;
    await Promise.all(publishers);
    const totalAcked = [...acked.values()].reduce((sum, offsets) => sum + offsets.length, 0);
    assert.ok(totalAcked >= (LOAD_SECONDS * 1000 * CHANNELS) / PERIOD_MS / 4, `a steady load was published (${totalAcked} acknowledged)`);

    // Every client catches up to each channel's last acknowledged offset.
    const caughtUp = (state) => channels.every((ch) => {
      const offsets = state.got.get(ch);
      const top = acked.get(ch).at(-1) ?? 0;
      return offsets.length > 0 && offsets.at(-1) >= top;
    });
    await withTimeout(
      Promise.all(clients.map(async (state) => {
        while (!caughtUp(state)) await new Promise((resolve) => state.waiters.push(resolve));
      })),
      WAIT,
      'every client catching up with the last acknowledged publications',
    );

    let deliveries = 0;
    let recoveries = 0;
    for (const state of clients) {
      for (const channel of channels) {
        const offsets = state.got.get(channel);
        deliveries += offsets.length;
        for (let k = 1; k < offsets.length; k++) {
          assert.ok(offsets[k] > offsets[k - 1], `${state.name} on ${channel}: offsets in order, none twice (${offsets[k - 1]} then ${offsets[k]})`);
        }
        const received = new Set(offsets);
        const lost = acked.get(channel).filter((o) => !received.has(o));
        assert.deepEqual(lost, [], `${state.name} on ${channel}: acknowledged offsets never delivered`);
      }
      for (const r of state.resubscribes) {
        assert.ok(r.wasRecovering && r.recovered, `${state.name}: a resubscription after the kill recovered: ${JSON.stringify(r)}`);
        recoveries++;
      }
    }
    // Every client that was on A came back and recovered each channel.
    assert.ok(recoveries >= onA * CHANNELS, `${recoveries} recovering resubscriptions for ${onA} clients on A`);
    console.log(
      `chaos: ${totalAcked} acknowledged of ${attempts} publishes (${failures} retried on B), ${deliveries} deliveries to ` +
        `${clients.length} clients (${onA} on the killed gateway), ${recoveries} recovered resubscriptions, 0 lost, 0 duplicates`,
    );
  } finally {
    for (const pool of pools) pool.disconnectAll();
    balancer.close();
  }
});
