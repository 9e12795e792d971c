// centrifuge-js (JSON and Protobuf builds) recovering across gateways: a
// client subscribed with `recoverable: true` on gateway A follows a few
// publications; A is killed (SIGKILL); publications go on through the HTTP
// API of gateway B while the client is away; a new client on B subscribes
// with `since` the last position the first one saw, and gets every missed
// publication, in order, told the recovery succeeded. With more missed
// than the namespace's history_size, it is told the recovery failed. With
// getState, a position trimmed from history makes the SDK reload the state
// (the server answers 112, not recovered:false), and offset 0 with an empty
// epoch recovers everything since.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/sdk_js_recovery.rs, which starts on one nats-server a gateway B and
// one killable gateway per test, and sets, besides TOKEN_SECRET:
//   GATEWAY_URLS   B's ws:// URL
//   KILLABLE_URLS  comma-separated ws:// URLs of the killable gateways
//   KILLABLE_PIDS  their process ids, in the same order
//   API_URL        B's http://.../api; API_KEY its key
//   CHANNEL_NS     a namespace with history and recovery
//   HISTORY_SIZE   its history_size

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const list = (name) => (process.env[name] || '').split(',').map((s) => s.trim()).filter(Boolean);
const KILLABLE_URLS = list('KILLABLE_URLS');
const KILLABLE_PIDS = list('KILLABLE_PIDS').map(Number);
const { API_URL = '', API_KEY = '', CHANNEL_NS = '' } = process.env;
const HISTORY_SIZE = Number(process.env.HISTORY_SIZE || 0);
if (KILLABLE_URLS.length < 4 || KILLABLE_PIDS.length !== KILLABLE_URLS.length || !API_URL || !API_KEY || !CHANNEL_NS || !HISTORY_SIZE) {
  throw new Error('run with `cargo test --release --test sdk_js_recovery` (needs KILLABLE_URLS, KILLABLE_PIDS, API_URL, API_KEY, CHANNEL_NS, HISTORY_SIZE)');
}

const TEST = { timeout: 15_000 };
const WAIT = 5_000;
const [URL_B] = GATEWAY_URLS;
/** Each test takes the next killable gateway. */
let nextKillable = 0;
function takeKillable() {
  const i = nextKillable++;
  assert.ok(i < KILLABLE_URLS.length, 'not enough killable gateways for the tests');
  return { url: KILLABLE_URLS[i], pid: KILLABLE_PIDS[i] };
}

/** Publishes `data` through B's HTTP API; returns its `{offset, epoch}`. */
async function publish(channel, data) {
  const response = await fetch(`${API_URL}/publish`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.ok(body.result, `publish failed: ${JSON.stringify(body)}`);
  assert.equal(typeof body.result.offset, 'number', JSON.stringify(body));
  return body.result;
}

/** The channel's current `{offset, epoch}`, from B's HTTP API (`history`, limit 0). */
async function streamTop(channel) {
  const response = await fetch(`${API_URL}/history`, {
    method: 'POST',
    headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, limit: 0 }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.ok(body.result, `history failed: ${JSON.stringify(body)}`);
  return { offset: body.result.offset || 0, epoch: body.result.epoch };
}

/** Publishes `{n}` for n in [from, to); their results. */
async function publishRange(channel, from, to) {
  const out = [];
  for (let n = from; n < to; n++) out.push(await publish(channel, { n }));
  return out;
}

/** Records a subscription's publications as `{n, offset}` (data decoded for the protocol). */
function record(sub, protocol) {
  const got = [];
  const waiters = [];
  sub.on('publication', (ctx) => {
    got.push({ n: protocol.decode(ctx.data).n, offset: ctx.offset });
    for (const w of waiters.splice(0)) w();
  });
  /** Resolves once `count` publications arrived (bounded by WAIT). */
  got.waitFor = (count, what) =>
    withTimeout(
      (async () => {
        while (got.length < count) await new Promise((resolve) => waiters.push(resolve));
        return got.slice();
      })(),
      WAIT,
      `${what} (have ${JSON.stringify(got)})`,
    );
  return got;
}

/**
 * Alice, subscribed with `recoverable: true` on a killable gateway A,
 * receives `seen` publications (published on B); then A is SIGKILLed.
 * Returns the channel and the position she saw last.
 */
async function followThenLoseGateway(pool, protocol, seen) {
  const a = takeKillable();
  const channel = uniqueChannel(`${CHANNEL_NS}:recovery_${protocol.name}`);
  const client = pool.client(a.url, { token: connToken('alice') });
  const sub = client.newSubscription(channel, { recoverable: true });
  const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed on A');
  const got = record(sub, protocol);
  sub.subscribe();
  client.connect();
  const ctx = await subscribed;
  assert.equal(ctx.recoverable, true, `recoverable subscription: ${JSON.stringify(ctx)}`);
  assert.equal(ctx.wasRecovering, false);
  assert.ok(ctx.streamPosition && ctx.streamPosition.epoch, `a stream position with an epoch: ${JSON.stringify(ctx)}`);
  let { offset, epoch } = ctx.streamPosition;

  const published = await publishRange(channel, 0, seen);
  const received = await got.waitFor(seen, `${seen} publications on A`);
  assert.deepEqual(received, published.map((p, n) => ({ n, offset: p.offset })), 'live publications on A, with their offsets');
  for (const p of published) assert.equal(p.epoch, epoch, 'the epoch of the subscribe reply');
  offset = received[received.length - 1].offset;

  // A dies; the client notices (and would reconnect to A forever: stop it).
  const lost = nextEvent(client, 'connecting', WAIT, 'the client noticing A is gone');
  process.kill(a.pid, 'SIGKILL');
  await lost;
  client.disconnect();
  return { channel, since: { offset, epoch } };
}

/** A new client of alice on B subscribing with `since`; resolves with its subscribed ctx and recorder. */
async function comeBackOnB(pool, protocol, channel, since) {
  const client = pool.client(URL_B, { token: connToken('alice') });
  const sub = client.newSubscription(channel, { recoverable: true, since });
  const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed on B');
  const got = record(sub, protocol);
  sub.subscribe();
  client.connect();
  return { ctx: await subscribed, got };
}

for (const protocol of PROTOCOLS) {
  describe(`centrifuge-js (${protocol.name}) recovery across gateways`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('missed publications are recovered on another gateway after the first one is killed', TEST, async () => {
      const { channel, since } = await followThenLoseGateway(pool, protocol, 3);
      const missed = await publishRange(channel, 3, 6);
      // Publications go on while the client comes back: none may be lost
      // between the recovered ones and the live ones, or given twice. (In
      // all, fewer than history_size after the client's position, so the
      // recovery must succeed however late the subscribe lands.)
      const during = publishRange(channel, 6, 11);
      assert.ok(11 - 3 < HISTORY_SIZE);

      const { ctx, got } = await comeBackOnB(pool, protocol, channel, since);
      assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
      assert.equal(ctx.recovered, true, `recovered: ${JSON.stringify(ctx)}`);
      assert.equal(ctx.recoverable, true);
      assert.equal(ctx.hasRecoveredPublications, true);
      assert.equal(ctx.streamPosition.epoch, since.epoch);
      const published = missed.concat(await during);
      const all = await got.waitFor(published.length, 'the missed publications, then live ones');
      assert.deepEqual(all, published.map((p, i) => ({ n: 3 + i, offset: p.offset })), 'every publication since the position, in order, once');

      // Then live ones, once each.
      const live = await publish(channel, { n: 11 });
      const after = await got.waitFor(published.length + 1, 'a live publication after the recovery');
      assert.deepEqual(after[after.length - 1], { n: 11, offset: live.offset });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(got.length, published.length + 1, `no duplicates: ${JSON.stringify(got)}`);
    });

    test('more missed publications than history_size: the app is told the recovery failed', TEST, async () => {
      const { channel, since } = await followThenLoseGateway(pool, protocol, 2);
      const missed = await publishRange(channel, 2, 2 + HISTORY_SIZE + 5);
      const top = missed[missed.length - 1];

      const { ctx, got } = await comeBackOnB(pool, protocol, channel, since);
      assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
      assert.equal(ctx.recovered, false, `not recovered: ${JSON.stringify(ctx)}`);
      assert.equal(ctx.recoverable, true);
      assert.equal(ctx.hasRecoveredPublications, false);
      assert.deepEqual(ctx.streamPosition, { offset: top.offset, epoch: top.epoch }, 'the current position');

      // Nothing replayed; live publications flow from the current position.
      const live = await publish(channel, { n: 100 });
      const all = await got.waitFor(1, 'a live publication after the failed recovery');
      assert.deepEqual(all, [{ n: 100, offset: live.offset }]);
    });

    test('getState with a position trimmed from history: refused (112), the state is reloaded', TEST, async () => {
      const channel = uniqueChannel(`${CHANNEL_NS}:getstate_${protocol.name}`);
      const [stale] = await publishRange(channel, 0, 1);
      await publishRange(channel, 1, 2 + HISTORY_SIZE);
      // The app's state is at `stale` first; reloaded, at the current position.
      const states = [];
      const client = pool.client(URL_B, { token: connToken('alice') });
      const sub = client.newSubscription(channel, {
        recoverable: true,
        getState: async () => {
          const state = states.length === 0 ? { offset: stale.offset, epoch: stale.epoch } : await streamTop(channel);
          states.push(state);
          return state;
        },
      });
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      const got = record(sub, protocol);
      sub.subscribe();
      client.connect();
      const ctx = await subscribed;
      assert.equal(states.length, 2, `getState asked again after the refused recovery: ${JSON.stringify(states)}`);
      assert.equal(ctx.recovered, true, `recovered from the reloaded position: ${JSON.stringify(ctx)}`);
      const live = await publish(channel, { n: 99 });
      assert.deepEqual(await got.waitFor(1, 'a live publication'), [{ n: 99, offset: live.offset }]);
    });

    test('getState with offset 0 and an empty epoch: everything published since is recovered', TEST, async () => {
      const channel = uniqueChannel(`${CHANNEL_NS}:getstate0_${protocol.name}`);
      // The app read the position of the empty channel, but keeps no epoch.
      assert.equal((await streamTop(channel)).offset, 0, 'a fresh channel');
      const published = await publishRange(channel, 0, 3);
      let calls = 0;
      const client = pool.client(URL_B, { token: connToken('alice') });
      const sub = client.newSubscription(channel, {
        recoverable: true,
        getState: async () => {
          calls++;
          return { offset: 0, epoch: '' };
        },
      });
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      const got = record(sub, protocol);
      sub.subscribe();
      client.connect();
      const ctx = await subscribed;
      assert.equal(ctx.recovered, true, `recovered: ${JSON.stringify(ctx)}`);
      assert.equal(calls, 1);
      const all = await got.waitFor(3, 'the publications since offset 0');
      assert.deepEqual(all, published.map((p, n) => ({ n, offset: p.offset })), 'in order, once');
    });
  });
}
