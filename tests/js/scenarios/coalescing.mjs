// centrifuge-js (JSON and Protobuf builds) against a gateway started with
// NATSGATE_CLIENT_WRITE_DELAY, so several pushes (and replies) share one
// WebSocket frame: every publication must still arrive, once, in order.
//
// Not picked up by `node --test tests/js/` (no test-like file name): run by
// tests/write_coalescing.rs, which sets GATEWAY_URLS and TOKEN_SECRET.

import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const TEST = { timeout: 15_000 };
const WAIT = 5_000;
const COUNT = 50;

for (const protocol of PROTOCOLS) {
  describe(`write coalescing (${protocol.name})`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());

    test('a burst of publications arrives complete and in order', TEST, async () => {
      const channel = uniqueChannel('coalesce');
      const subscriber = pool.client(GATEWAY_URLS[0], { token: connToken('sub') });
      const sub = subscriber.newSubscription(channel);
      const seen = [];
      let resolveAll;
      const all = new Promise((resolve) => { resolveAll = resolve; });
      sub.on('publication', (ctx) => {
        seen.push(protocol.decode(ctx.data).seq);
        if (seen.length === COUNT) resolveAll();
      });
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed');
      sub.subscribe();
      subscriber.connect();
      await subscribed;

      const publisher = pool.client(GATEWAY_URLS[0], { token: connToken('pub') });
      const connected = nextEvent(publisher, 'connected', WAIT, 'publisher connected');
      publisher.connect();
      await connected;
      // All at once: the replies come back coalesced too.
      await withTimeout(
        Promise.all(Array.from({ length: COUNT }, (_, seq) => publisher.publish(channel, protocol.encode({ seq })))),
        WAIT,
        'publish replies',
      );
      await withTimeout(all, WAIT, `${COUNT} publications (got ${seen.length})`);
      assert.deepEqual(seen, Array.from({ length: COUNT }, (_, i) => i));
    });
  });
}
