// centrifuge-js (JSON and Protobuf builds) on gateway B, and natsgate's GRPC
// API on gateway A called by the Python client in tests/grpc/client.py.
//
// Not picked up by `node --test tests/js/`: run by tests/grpc_api.rs, which
// starts two gateways (A, B) on one nats-server and sets, besides
// GATEWAY_URLS (B only) and TOKEN_SECRET:
//   GRPC_PYTHON   the Python with grpcio; GRPC_CLIENT  tests/grpc/client.py
//   PYTHONPATH    where the generated stubs are
//   GRPC_TARGET   gateway A's GRPC API (host:port); GRPC_KEY  its key

import { describe, test, afterEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { ClientPool, GATEWAY_URLS, PROTOCOLS, connToken, nextEvent, uniqueChannel, withTimeout } from '../helpers.mjs';

const { GRPC_PYTHON = '', GRPC_CLIENT = '', GRPC_TARGET = '' } = process.env;
if (!GRPC_PYTHON || !GRPC_CLIENT || !GRPC_TARGET || GATEWAY_URLS.length < 1) {
  throw new Error('run with `cargo test --release --test grpc_api`');
}
const TEST = { timeout: 20_000 };
const WAIT = 10_000;
const [URL_B] = GATEWAY_URLS;

/** Runs the Python GRPC client with `args`; its parsed JSON reply. */
function grpcClient(...args) {
  const run = new Promise((resolve, reject) => {
    execFile(GRPC_PYTHON, [GRPC_CLIENT, ...args], { timeout: WAIT }, (error, stdout, stderr) => {
      if (error) reject(new Error(`client.py ${args.join(' ')}: ${error.message}\n${stdout}${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
  return withTimeout(run, WAIT + 1000, `client.py ${args[0]}`);
}

for (const protocol of PROTOCOLS) {
  describe(`GRPC API on A, centrifuge-js ${protocol.name} on B`, () => {
    const pool = new ClientPool(protocol);
    afterEach(() => pool.disconnectAll());
    after(() => pool.disconnectAll());

    test('a GRPC publish on A reaches the subscriber on B; a GRPC disconnect on A closes it', TEST, async () => {
      const user = uniqueChannel('grpc_user');
      const channel = uniqueChannel('grpc');
      const client = pool.client(URL_B, { token: connToken(user) });
      const sub = client.newSubscription(channel);
      const subscribed = nextEvent(sub, 'subscribed', WAIT, 'subscribed on B');
      sub.subscribe();
      client.connect();
      await subscribed;

      const publication = nextEvent(sub, 'publication', WAIT, 'the GRPC publication on B');
      const reply = await grpcClient('publish', channel, JSON.stringify({ text: 'via grpc', n: 7 }));
      assert.equal(reply.error, undefined, JSON.stringify(reply));
      assert.deepEqual(protocol.decode((await publication).data), { text: 'via grpc', n: 7 });

      const disconnected = nextEvent(client, 'disconnected', WAIT, 'disconnect from the GRPC API');
      await grpcClient('disconnect', user, '4501');
      const ctx = await disconnected;
      assert.equal(ctx.code, 4501);
      assert.equal(ctx.reason, 'grpc');
    });
  });
}
