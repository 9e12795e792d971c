// Bad input on natsgate's SockJS endpoints, with raw HTTP requests (the
// SockJS wire format), while a centrifuge-js client over SockJS keeps
// working: unknown session, empty, broken and oversized payloads, a
// protocol message that is no command, a second receiving request, a bad
// JSONP callback, and a flood of sends.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/sockjs.rs, which sets, besides GATEWAY_URLS and TOKEN_SECRET:
//   SOCKJS_URLS  comma-separated http://.../connection/sockjs of the gateways
//   BODY_LIMIT   the gateways' NATSGATE_WEBSOCKET_MESSAGE_SIZE_LIMIT

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import SockJS from 'sockjs-client';
import { ClientPool, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const [SOCKJS_A] = (process.env.SOCKJS_URLS || '').split(',').filter(Boolean);
const BODY_LIMIT = Number(process.env.BODY_LIMIT || 0);
if (!SOCKJS_A || !BODY_LIMIT) {
  throw new Error('run with `cargo test --release --test sockjs`');
}
const TEST = { timeout: 25_000 };
const WAIT = 6_000;
const JSON_SDK = PROTOCOLS.find((p) => p.name === 'json');

function collect(sub) {
  const seen = [];
  sub.on('publication', (ctx) => seen.push(ctx.data));
  return seen;
}

async function until(predicate, what) {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('sockjs bad input', () => {
  const pool = new ClientPool(JSON_SDK);
  afterEach(() => pool.disconnectAll());
  const session = () => `${SOCKJS_A}/000/${uniqueChannel('s').replace(/[^a-z0-9]/g, '')}`;

  test('protocol answers: info, unknown session, broken payloads, oversized body, bad callback', TEST, async () => {
    const info = await fetch(`${SOCKJS_A}/info`);
    assert.equal(info.status, 200);
    assert.equal((await info.json()).websocket, true);
    assert.equal((await fetch(`${SOCKJS_A}/nope/x`)).status, 404);
    // Sending to a session nobody opened.
    const unknown = await fetch(`${session()}/xhr_send`, { method: 'POST', body: '["x"]' });
    assert.equal(unknown.status, 404);
    // Open a session, then send it garbage.
    const s = session();
    const open = await fetch(`${s}/xhr`, { method: 'POST' });
    assert.equal(await open.text(), 'o\n');
    const empty = await fetch(`${s}/xhr_send`, { method: 'POST', body: '' });
    assert.equal(empty.status, 400);
    assert.equal(await empty.text(), 'Payload expected.');
    const broken = await fetch(`${s}/xhr_send`, { method: 'POST', body: '["x"' });
    assert.equal(broken.status, 400);
    assert.equal(await broken.text(), 'Broken JSON encoding.');
    const big = await fetch(`${s}/xhr_send`, { method: 'POST', body: JSON.stringify(['x'.repeat(BODY_LIMIT + 1)]) });
    assert.equal(big.status, 413);
    // A protocol message that is no command: the session closes with 3501.
    const bad = await fetch(`${s}/xhr_send`, { method: 'POST', body: JSON.stringify(['not json']) });
    assert.equal(bad.status, 204);
    const closed = await fetch(`${s}/xhr`, { method: 'POST' });
    assert.equal(await closed.text(), 'c[3501,"bad request"]\n');
    // A second receiver on a live session is refused with 2010.
    const t = session();
    await fetch(`${t}/xhr`, { method: 'POST' });
    const first = fetch(`${t}/xhr`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 100));
    const second = await fetch(`${t}/xhr`, { method: 'POST' });
    assert.equal(await second.text(), 'c[2010,"Another connection still open"]\n');
    // The first poll ends with the stale close (no connect was sent).
    assert.match(await withTimeout(first.then((r) => r.text()), 15_000, 'stale close'), /^c\[3502,"stale"\]\n$/);
    const jsonp = await fetch(`${session()}/jsonp?c=alert(1)`);
    assert.equal(jsonp.status, 500);
  });

  test('a flood of sends on one session leaves other clients working', TEST, async () => {
    const s = session();
    await fetch(`${s}/xhr`, { method: 'POST' });
    const connect = JSON.stringify({ id: 1, connect: { token: connToken('flood') } });
    await fetch(`${s}/xhr_send`, { method: 'POST', body: JSON.stringify([connect]) });
    const pings = JSON.stringify(Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: i + 2, rpc: { method: 'x' } })));
    const floods = Array.from({ length: 20 }, () => fetch(`${s}/xhr_send`, { method: 'POST', body: pings }).then((r) => r.status));
    // Meanwhile another SockJS client connects and publishes to itself.
    const other = pool.client([{ transport: 'sockjs', endpoint: SOCKJS_A }], {
      sockjs: SockJS,
      sockjsOptions: { transports: ['xhr-polling'] },
      token: connToken('eve'),
    });
    const channel = uniqueChannel('sjf');
    other.connect();
    const sub = other.newSubscription(channel);
    const seen = collect(sub);
    sub.subscribe();
    await nextEvent(sub, 'subscribed', WAIT);
    await sub.publish({ ok: true });
    await until(() => seen.length === 1, 'publication during the flood');
    const statuses = await withTimeout(Promise.all(floods), 15_000, 'flood requests answered');
    // Each send was taken (204) or refused once the session had closed (404).
    assert.ok(statuses.every((st) => st === 204 || st === 404), statuses.join(','));
  });
});
