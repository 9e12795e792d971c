// A real Centrifugo server API client (cent.js, from npm) and a plain NATS
// client (nats.js v2) driving natsgate, with centrifuge-js (JSON and
// Protobuf builds) listening. cent.js is used unchanged: only its URL and
// API key point at natsgate.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/sdk_js_api.rs, which starts two gateways (A, B) on one nats-server
// and sets, besides GATEWAY_URLS and TOKEN_SECRET:
//   API_URLS      comma-separated http://.../api of the same gateways
//   API_KEY       their NATSGATE_API_KEY
//   NATS_URL      the nats-server both use
//   NATS_CHANNEL  a channel, and NATS_SUBJECT its NATS subject (computed
//                 by natsgate's SubjectMap, so this file need not know it)

import { describe, test, afterEach, after } from 'node:test';
import assert from 'node:assert/strict';
import centjs from 'cent.js';
import { connect as natsConnect, headers as natsHeaders } from 'nats';
import {
  ClientPool,
  GATEWAY_URLS,
  PROTOCOLS,
  connToken,
  nextEvent,
  uniqueChannel,
  withTimeout,
} from '../helpers.mjs';

const { CentClient, CentException } = centjs;

const API_URLS = (process.env.API_URLS || '').split(',').filter(Boolean);
const { API_KEY = '', NATS_URL = '', NATS_CHANNEL = '', NATS_SUBJECT = '' } = process.env;
if (API_URLS.length < 2 || GATEWAY_URLS.length < 2 || !API_KEY || !NATS_URL || !NATS_CHANNEL || !NATS_SUBJECT) {
  throw new Error('run with `cargo test --release --test sdk_js_api` (needs API_URLS, API_KEY, NATS_URL, NATS_CHANNEL, NATS_SUBJECT)');
}

const TEST = { timeout: 10_000 };
const WAIT = 5_000;
const [URL_A, URL_B] = GATEWAY_URLS;
const [API_A, API_B] = API_URLS;
const [JSON_SDK, PROTOBUF_SDK] = PROTOCOLS;

const centA = new CentClient({ url: API_A, apiKey: API_KEY });
const centB = new CentClient({ url: API_B, apiKey: API_KEY });

/** A connected client of `user` on `url` with subscriptions to `channels`, all subscribed. */
async function subscribed(pool, url, user, channels) {
  const client = pool.client(url, { token: connToken(user) });
  const subs = channels.map((channel) => client.newSubscription(channel));
  const ready = Promise.all(subs.map((sub) => nextEvent(sub, 'subscribed', WAIT, `${user} subscribed to ${sub.channel}`)));
  subs.forEach((sub) => sub.subscribe());
  client.connect();
  await ready;
  return { client, subs };
}

/** A connected client of `user` (no client-side subscriptions). */
async function connected(pool, url, user) {
  const client = pool.client(url, { token: connToken(user) });
  const ready = nextEvent(client, 'connected', WAIT, `${user} connected`);
  client.connect();
  const ctx = await ready;
  return { client, id: ctx.client };
}

/** Resolves with the first `event` from `emitter` for which `pred(ctx)` holds. */
function nextMatching(emitter, event, pred, ms, what) {
  let handler;
  const promise = new Promise((resolve) => {
    handler = (ctx) => {
      if (pred(ctx)) resolve(ctx);
    };
    emitter.on(event, handler);
  });
  return withTimeout(promise, ms, what).finally(() => emitter.removeListener(event, handler));
}

describe('cent.js (server API client) against natsgate', () => {
  const json = new ClientPool(JSON_SDK);
  const protobuf = new ClientPool(PROTOBUF_SDK);
  afterEach(() => {
    json.disconnectAll();
    protobuf.disconnectAll();
  });

  test('publish on A reaches JSON and Protobuf subscribers on B, with tags', TEST, async () => {
    const channel = uniqueChannel('cent_publish');
    const j = await subscribed(json, URL_B, 'bob', [channel]);
    const p = await subscribed(protobuf, URL_B, 'bob', [channel]);
    const atJson = nextEvent(j.subs[0], 'publication', WAIT, 'publication at the JSON client');
    const atProtobuf = nextEvent(p.subs[0], 'publication', WAIT, 'publication at the Protobuf client');

    const data = { text: 'from cent.js', n: 7 };
    const result = await centA.publish({ channel, data, tags: { via: 'cent.js' } });
    assert.equal(typeof result, 'object');

    const gotJson = await atJson;
    assert.deepEqual(gotJson.data, data);
    assert.deepEqual(gotJson.tags, { via: 'cent.js' });
    const gotProtobuf = await atProtobuf;
    assert.deepEqual(PROTOBUF_SDK.decode(gotProtobuf.data), data);
    assert.deepEqual(gotProtobuf.tags, { via: 'cent.js' });
  });

  test('broadcast on B reaches subscribers on A in every channel', TEST, async () => {
    const one = uniqueChannel('cent_bc1');
    const two = uniqueChannel('cent_bc2');
    const j = await subscribed(json, URL_A, 'alice', [one, two]);
    const p = await subscribed(protobuf, URL_A, 'alice', [two]);
    const events = [
      nextEvent(j.subs[0], 'publication', WAIT, `broadcast in ${one}`),
      nextEvent(j.subs[1], 'publication', WAIT, `broadcast in ${two}`),
    ];
    const atProtobuf = nextEvent(p.subs[0], 'publication', WAIT, `protobuf broadcast in ${two}`);

    const data = { broadcast: true };
    const result = await centB.broadcast({ channels: [one, two], data });
    assert.equal(result.responses.length, 2);
    for (const response of result.responses) assert.deepEqual(response, { result: {} });

    for (const got of await Promise.all(events)) assert.deepEqual(got.data, data);
    assert.deepEqual(PROTOBUF_SDK.decode((await atProtobuf).data), data);
  });

  test('info lists both gateways; channels sums their subscribers', TEST, async () => {
    const channel = uniqueChannel('cent_count');
    await subscribed(json, URL_A, 'u1', [channel]);
    await subscribed(json, URL_B, 'u2', [channel]);
    await subscribed(protobuf, URL_B, 'u3', [channel]);

    const info = await centA.getInfo();
    assert.equal(info.nodes.length, 2, JSON.stringify(info));
    for (const node of info.nodes) {
      assert.equal(typeof node.uid, 'string');
      assert.ok(node.uid.length > 0);
      assert.equal(typeof node.name, 'string');
      assert.equal(typeof node.num_clients, 'number');
    }
    assert.notEqual(info.nodes[0].uid, info.nodes[1].uid);
    assert.ok(info.nodes.reduce((n, node) => n + node.num_clients, 0) >= 3, JSON.stringify(info));

    const channels = await centB.getChannels({ pattern: `${channel}*` });
    assert.deepEqual(channels, { channels: { [channel]: { num_clients: 3 } } });
  });

  test('server-side subscribe, publication, unsubscribe and disconnect reach a client on B', TEST, async () => {
    const channel = uniqueChannel('cent_server_side');
    const { client } = await connected(json, URL_B, 'carol');

    const subscribedEvent = nextMatching(client, 'subscribed', (ctx) => ctx.channel === channel, WAIT, 'server-side subscribed');
    await centA.subscribe({ user: 'carol', channel });
    await subscribedEvent;

    const publication = nextMatching(client, 'publication', (ctx) => ctx.channel === channel, WAIT, 'server-side publication');
    await centA.publish({ channel, data: { server_side: 1 } });
    assert.deepEqual((await publication).data, { server_side: 1 });

    const unsubscribed = nextMatching(client, 'unsubscribed', (ctx) => ctx.channel === channel, WAIT, 'server-side unsubscribed');
    await centA.unsubscribe({ user: 'carol', channel });
    await unsubscribed;

    const disconnected = nextEvent(client, 'disconnected', WAIT, 'disconnected by the API');
    await centA.disconnect({ user: 'carol' });
    const ctx = await disconnected;
    assert.equal(ctx.code, 3503);
    assert.equal(ctx.reason, 'force disconnect');
    assert.equal(client.state, 'disconnected');
  });

  test('errors reject: invalid channel, unavailable method, wrong key', TEST, async () => {
    await assert.rejects(centA.publish({ channel: '', data: {} }), CentException);
    await assert.rejects(centA.getPresence({ channel: 'x' }), CentException);
    await assert.rejects(centA.getHistory({ channel: 'x' }), CentException);
    const wrongKey = new CentClient({ url: API_A, apiKey: 'not-the-key' });
    // natsgate answers 401 with a plain body; cent.js fails parsing it.
    await assert.rejects(wrongKey.publish({ channel: 'x', data: {} }));
  });

  test('pipeline (legacy newline-separated /api) answers each command', TEST, async () => {
    const channel = uniqueChannel('cent_pipeline');
    const j = await subscribed(json, URL_B, 'dave', [channel]);
    const seen = [];
    const both = new Promise((resolve) => {
      j.subs[0].on('publication', (ctx) => {
        seen.push(ctx.data.i);
        if (seen.length === 2) resolve();
      });
    });
    const results = await centA.pipeline([
      { method: 'publish', params: { channel, data: { i: 1 } } },
      { method: 'broadcast', params: { channels: [channel], data: { i: 2 } } },
      { method: 'channels', params: { pattern: channel } },
    ]);
    assert.equal(results.length, 3);
    assert.deepEqual(results[0], {});
    assert.deepEqual(results[1], { responses: [{ result: {} }] });
    assert.deepEqual(results[2], { channels: { [channel]: { num_clients: 1 } } });
    await withTimeout(both, WAIT, 'both pipeline publications');
    assert.deepEqual(seen, [1, 2]);
  });
});

describe('nats.js publishing straight to a channel subject', () => {
  const json = new ClientPool(JSON_SDK);
  const protobuf = new ClientPool(PROTOBUF_SDK);
  let nc;
  after(async () => {
    json.disconnectAll();
    protobuf.disconnectAll();
    if (nc) await nc.close();
  });

  test('JSON reaches both SDK builds with header tags; non-JSON only Protobuf', TEST, async () => {
    const j = await subscribed(json, URL_A, 'erin', [NATS_CHANNEL]);
    const p = await subscribed(protobuf, URL_B, 'erin', [NATS_CHANNEL]);
    const jsonSeen = [];
    const protobufSeen = [];
    const waiters = [];
    const collect = (sub, seen) =>
      sub.on('publication', (ctx) => {
        seen.push(ctx);
        waiters.splice(0).forEach((w) => w());
      });
    collect(j.subs[0], jsonSeen);
    collect(p.subs[0], protobufSeen);
    const until = (pred, what) =>
      withTimeout(
        new Promise((resolve) => {
          const check = () => (pred() ? resolve() : waiters.push(check));
          check();
        }),
        WAIT,
        what,
      );

    nc = await natsConnect({ servers: NATS_URL, name: 'natsgate-js-test' });
    const enc = new TextEncoder();
    const h = natsHeaders();
    h.set('Natsgate-Tags', JSON.stringify({ origin: 'nats.js' }));
    nc.publish(NATS_SUBJECT, enc.encode(JSON.stringify({ direct: 1 })), { headers: h });
    await nc.flush();
    await until(() => jsonSeen.length >= 1 && protobufSeen.length >= 1, 'first direct publication at both');
    assert.deepEqual(jsonSeen[0].data, { direct: 1 });
    assert.deepEqual(jsonSeen[0].tags, { origin: 'nats.js' });
    assert.deepEqual(PROTOBUF_SDK.decode(protobufSeen[0].data), { direct: 1 });
    assert.deepEqual(protobufSeen[0].tags, { origin: 'nats.js' });

    // Not JSON: delivered to Protobuf as raw bytes, never to JSON.
    const binary = new Uint8Array([0, 255, 1, 2, 0x7b]);
    nc.publish(NATS_SUBJECT, binary);
    await nc.flush();
    await until(() => protobufSeen.length >= 2, 'binary publication at the Protobuf client');
    assert.deepEqual(Array.from(protobufSeen[1].data), Array.from(binary));

    // The next valid one reaches both; the JSON client saw nothing in between.
    nc.publish(NATS_SUBJECT, enc.encode('"after"'));
    await nc.flush();
    await until(() => jsonSeen.length >= 2 && protobufSeen.length >= 3, 'publication after the binary one');
    assert.deepEqual(jsonSeen.map((ctx) => ctx.data), [{ direct: 1 }, 'after']);
    assert.equal(PROTOBUF_SDK.decode(protobufSeen[2].data), 'after');
  });
});
