// centrifuge-js (JSON and Protobuf) with delta compression (`delta:
// 'fossil'`) and tags filters (`tagsFilter`), issue #20.
//
// Run by tests/delta_sdk.rs against two natsgate gateways on NATS (the API
// on the first, subscribers on the second), on the embedded broker, and
// against Centrifugo v6.9.1, with the same assertions:
//   GATEWAY_URLS   two ws:// URLs (the same one twice for Centrifugo)
//   TOKEN_SECRET   the HMAC token key
//   API_URL, API_KEY  the HTTP API of the first server (http://host:port)
// Namespaces: `dl` (history, allow_recovery, allowed_delta_types fossil,
// allow_tags_filter), `plain` (history only).
//
// Every publication the SDK hands over must equal the document published;
// bytes on the wire (WebSocket frames as received) of a delta subscriber
// and of a plain one are printed as `DELTA-BYTES ...` lines.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, countingWebSocket, nextEvent, serverApi, uniqueChannel, withTimeout,
} from '../helpers.mjs';

const API_URL = process.env.API_URL || '';
const API_KEY = process.env.API_KEY || '';
if (!API_URL || !API_KEY) {
  throw new Error('API_URL and API_KEY must be set: run with `cargo test --release --test delta_sdk`');
}
const TEST = { timeout: 25_000 };
const WAIT = 8_000;
const SUBSCRIBER_URL = GATEWAY_URLS[GATEWAY_URLS.length - 1];

const api = (method, params) => serverApi(API_URL, API_KEY, method, params);

/** A document that changes a little with every publication (as tests/delta.rs). */
function documentOf(n) {
  const items = [];
  for (let i = 0; i < 40; i++) items.push({ id: i, name: `item ${i}`, price: i * 10 + (n % 3) });
  return { n, title: 'a document that changes a little with every publication', items };
}

/** Collects a subscription's publications and hands them out in order. */
class Inbox {
  constructor(sub) {
    this.queue = [];
    this.waiters = [];
    sub.on('publication', (ctx) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(ctx);
      else this.queue.push(ctx);
    });
  }

  next(what) {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), WAIT, what);
  }
}

// The six tagged publications and the filters of tests/differential/cases_delta.rs.
const TAGGED = [
  { kind: 'trade', sym: 'BTCUSD', price: '100.5' },
  { kind: 'quote', sym: 'BTCUSD', price: '99' },
  { kind: 'trade', sym: 'ETHUSD', price: '10' },
  { kind: 'news' },
  {},
  { kind: 'quote', sym: 'ETHBTC', price: '1000.25' },
];
const leaf = (key, cmp, val) => ({ key, cmp, val });
const FILTERS = [
  ['eq', leaf('kind', 'eq', 'trade'), [0, 2]],
  ['in', { key: 'kind', cmp: 'in', vals: ['quote', 'news'] }, [1, 3, 5]],
  ['and', { op: 'and', nodes: [leaf('kind', 'eq', 'trade'), leaf('sym', 'sw', 'BTC')] }, [0]],
  ['or', { op: 'or', nodes: [leaf('kind', 'eq', 'news'), leaf('price', 'gte', '100')] }, [0, 3, 5]],
  ['not', { op: 'not', nodes: [{ key: 'kind', cmp: 'ex' }] }, [4]],
  [
    'nested',
    {
      op: 'and',
      nodes: [
        { key: 'kind', cmp: 'nin', vals: ['trade'] },
        { op: 'not', nodes: [{ op: 'or', nodes: [leaf('sym', 'ct', 'ETH'), leaf('price', 'lt', '50')] }] },
      ],
    },
    [1, 3, 4],
  ],
  ['neq', leaf('kind', 'neq', 'trade'), [1, 3, 4, 5]],
  ['ew lte', { op: 'and', nodes: [leaf('sym', 'ew', 'USD'), leaf('price', 'lte', '99.0')] }, [1, 2]],
  ['nex', { key: 'price', cmp: 'nex' }, [3, 4]],
];

for (const protocol of PROTOCOLS) {
  describe(`delta and tags filter (${protocol.name})`, () => {
    let pool;
    afterEach(() => pool.disconnectAll());

    test('delta: every publication is the document, live and after a reconnect with recovery', TEST, async () => {
      pool = new ClientPool(protocol);
      const channel = uniqueChannel(`dl:js-${protocol.name}`);
      const deltaWire = { bytes: 0 };
      const plainWire = { bytes: 0 };
      const client = pool.client(SUBSCRIBER_URL, { token: connToken('delta-js'), websocket: countingWebSocket(deltaWire) });
      const plainClient = pool.client(SUBSCRIBER_URL, { token: connToken('plain-js'), websocket: countingWebSocket(plainWire) });
      const sub = client.newSubscription(channel, { delta: 'fossil', recoverable: true });
      const plain = plainClient.newSubscription(channel, { recoverable: true });
      const inbox = new Inbox(sub);
      const plainInbox = new Inbox(plain);
      const subscribed = [nextEvent(sub, 'subscribed', WAIT), nextEvent(plain, 'subscribed', WAIT)];
      client.connect();
      plainClient.connect();
      sub.subscribe();
      plain.subscribe();
      await Promise.all(subscribed);
      // Bytes from here on: the publications only.
      deltaWire.bytes = 0;
      plainWire.bytes = 0;

      const N = 20;
      for (let n = 0; n < N; n++) {
        await api('publish', { channel, data: documentOf(n), delta: true });
        assert.deepEqual(protocol.decode((await inbox.next(`delta publication ${n}`)).data), documentOf(n));
        assert.deepEqual(protocol.decode((await plainInbox.next(`plain publication ${n}`)).data), documentOf(n));
      }
      const stats = sub.deltaStats();
      assert.equal(stats.numPublications, N);
      assert.equal(stats.numFullPayloads, 1, `only the first is whole: ${JSON.stringify(stats)}`);
      assert.equal(stats.numDeltaPayloads, N - 1);
      assert.ok(deltaWire.bytes * 2 < plainWire.bytes, `deltas are much smaller: ${deltaWire.bytes} vs ${plainWire.bytes}`);
      console.log(
        `DELTA-BYTES ${protocol.name}: ${N} publications, wire ${deltaWire.bytes} bytes with delta, ` +
          `${plainWire.bytes} without (${((deltaWire.bytes * 100) / plainWire.bytes).toFixed(1)}%); ` +
          `data ${stats.bytesReceived} of ${stats.bytesDecoded} bytes`,
      );

      // Away, then back: the missed ones are recovered (first whole, then
      // deltas) and the next live one is a delta again.
      const disconnected = nextEvent(client, 'disconnected', WAIT);
      client.disconnect();
      await disconnected;
      for (let n = N; n < N + 5; n++) await api('publish', { channel, data: documentOf(n), delta: true });
      const resubscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed again');
      client.connect();
      const ctx = await resubscribed;
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, true, `recovered: ${JSON.stringify(ctx)}`);
      for (let n = N; n < N + 5; n++) {
        assert.deepEqual(protocol.decode((await inbox.next(`recovered ${n}`)).data), documentOf(n));
      }
      await api('publish', { channel, data: documentOf(N + 5), delta: true });
      assert.deepEqual(protocol.decode((await inbox.next('live after recovery')).data), documentOf(N + 5));
      const after = sub.deltaStats();
      assert.equal(after.numPublications, N + 6);
      assert.equal(after.numFullPayloads, 2, `the first recovered one is whole: ${JSON.stringify(after)}`);
    });

    test('tags filter: exactly the matching publications', TEST, async () => {
      pool = new ClientPool(protocol);
      const client = pool.client(SUBSCRIBER_URL, { token: connToken('tags-js') });
      const cases = FILTERS.map(([name, filter, expected]) => {
        const channel = uniqueChannel(`dl:tf-${protocol.name}`);
        // Or an end marker, so that the end of each channel's stream can be awaited.
        const tagsFilter = { op: 'or', nodes: [filter, leaf('end', 'eq', '1')] };
        const sub = client.newSubscription(channel, { tagsFilter });
        const got = [];
        const ended = new Promise((resolve) => {
          sub.on('publication', (ctx) => {
            const { n } = protocol.decode(ctx.data);
            if (n === 'end') resolve();
            else got.push(n);
          });
        });
        return { name, channel, sub, expected, got, ended };
      });
      const subscribed = cases.map((c) => nextEvent(c.sub, 'subscribed', WAIT, `subscribed ${c.name}`));
      client.connect();
      cases.forEach((c) => c.sub.subscribe());
      await Promise.all(subscribed);
      for (const c of cases) {
        for (const [n, tags] of TAGGED.entries()) await api('publish', { channel: c.channel, data: { n }, tags });
        await api('publish', { channel: c.channel, data: { n: 'end' }, tags: { end: '1' } });
      }
      for (const c of cases) {
        await withTimeout(c.ended, WAIT, `end of ${c.name}`);
        assert.deepEqual(c.got, c.expected, `filter ${c.name}`);
      }
    });

    test('tags filter: bad filters unsubscribe with 107 bad request', TEST, async () => {
      pool = new ClientPool(protocol);
      const client = pool.client(SUBSCRIBER_URL, { token: connToken('bad-tags-js') });
      const bad = [
        ['dl', { key: 'k', cmp: 'eq' }],
        ['dl', { key: 'k', cmp: 'like', val: 'x' }],
        ['dl', { op: 'not', nodes: [] }],
        ['dl', { op: 'xor', nodes: [{ key: 'k', cmp: 'ex' }] }],
        ['dl', { key: 'k', cmp: 'in', vals: [] }],
        // Valid, but the namespace does not allow tags filters.
        ['plain', { key: 'k', cmp: 'ex' }],
      ];
      const subs = bad.map(([ns, tagsFilter]) => client.newSubscription(uniqueChannel(`${ns}:bad-js`), { tagsFilter }));
      const unsubscribed = subs.map((s) => nextEvent(s, 'unsubscribed', WAIT, `unsubscribed ${s.channel}`));
      client.connect();
      subs.forEach((s) => s.subscribe());
      for (const [i, ctx] of (await Promise.all(unsubscribed)).entries()) {
        assert.deepEqual([ctx.code, ctx.reason], [107, 'bad request'], `${JSON.stringify(bad[i])}: ${JSON.stringify(ctx)}`);
      }
      assert.equal(client.state, 'connected', 'the connection stays');
      assert.throws(
        () => client.newSubscription(uniqueChannel('dl:both'), { delta: 'fossil', tagsFilter: { key: 'k', cmp: 'ex' } }),
        /cannot use delta and tagsFilter together/,
      );
    });
  });
}
