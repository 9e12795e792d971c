// centrifuge-js (JSON build) through natsgate's backend proxy, against the
// HTTP test backend of tests/proxy.rs: connect without a token, the
// backend's server-side subscription, subscribe allowed and refused,
// publish rewritten by the backend, RPC answered by it.
//
// Not picked up by `node --test tests/js/`: run by tests/proxy.rs, which
// starts the backend and a gateway and sets GATEWAY_URLS and TOKEN_SECRET.

import { describe, test, afterEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, nextEvent } from '../helpers.mjs';

const TEST = { timeout: 20_000 };
const WAIT = 10_000;
const [URL] = GATEWAY_URLS;
const json = PROTOCOLS.find((p) => p.name === 'json');

describe('centrifuge-js through the backend proxy', () => {
  const pool = new ClientPool(json);
  afterEach(() => pool.disconnectAll());
  after(() => pool.disconnectAll());

  test('connect without a token, subscribe, publish and rpc are decided by the backend', TEST, async () => {
    const client = pool.client(URL, {});
    const connected = nextEvent(client, 'connected', WAIT, 'connected through the connect proxy');
    const serverSide = nextEvent(client, 'subscribed', WAIT, 'the backend\'s server-side subscription');
    client.connect();
    const ctx = await connected;
    assert.deepEqual(ctx.data, { welcome: true });
    assert.equal((await serverSide).channel, 'news');

    const sub = client.newSubscription('px:js');
    const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed through the subscribe proxy');
    sub.subscribe();
    assert.deepEqual((await subscribed).data, { granted: true });

    const publication = nextEvent(sub, 'publication', WAIT, 'the rewritten publication');
    await sub.publish({ text: 'hi' });
    assert.deepEqual((await publication).data, { rewritten: { text: 'hi' } });

    const result = await client.rpc('sum', [1, 2]);
    assert.deepEqual(result.data, { method: 'sum', echo: [1, 2] });

    const refused = client.newSubscription('px:refused');
    const unsubscribed = nextEvent(refused, 'unsubscribed', WAIT, 'refused by the backend');
    refused.subscribe();
    const u = await unsubscribed;
    assert.equal(u.code, 4001);
    assert.equal(u.reason, 'not for you');
  });
});
