// Shared helpers for the centrifuge-js tests (not a test file itself).
//
// Configuration comes from the environment, set by tests/sdk_js.rs:
//   GATEWAY_URLS  comma-separated ws:// URLs of running gateways
//   TOKEN_SECRET  the gateways' NATSGATE_TOKEN_HMAC_SECRET_KEY
//   CENTRIFUGE_DEBUG=1 turns on the SDK's debug logging.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';

export const GATEWAY_URLS = (process.env.GATEWAY_URLS || '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
export const TOKEN_SECRET = process.env.TOKEN_SECRET || '';

if (GATEWAY_URLS.length === 0 || TOKEN_SECRET === '') {
  throw new Error('GATEWAY_URLS and TOKEN_SECRET must be set: run these tests with `cargo test --release --test sdk_js`');
}

/** The two SDK builds, with how each carries a JSON payload. */
export const PROTOCOLS = [
  {
    name: 'json',
    Centrifuge: CentrifugeJson,
    encode: (value) => value,
    decode: (data) => data,
  },
  {
    name: 'protobuf',
    Centrifuge: CentrifugeProtobuf,
    // Protobuf carries bytes: the SDK expects a Uint8Array.
    encode: (value) => new TextEncoder().encode(JSON.stringify(value)),
    decode: (data) => JSON.parse(new TextDecoder().decode(data)),
  },
];

/** Signs `claims` as an HS256 JWT. */
export function hs256Token(claims, secret = TOKEN_SECRET) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const signature = crypto.createHmac('sha256', secret).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

/** A connection token for `user`, expiring in `expIn` seconds (negative: already expired). */
export function connToken(user, { expIn = 3600, secret = TOKEN_SECRET, ...extra } = {}) {
  const exp = Math.floor(Date.now() / 1000) + expIn;
  return hs256Token({ sub: user, exp, ...extra }, secret);
}

/** A channel name no other test uses. */
export function uniqueChannel(prefix) {
  return `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
}

/** Rejects with a message naming `what` if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first `event` from `emitter` (a client or subscription), bounded by `ms`. */
export function nextEvent(emitter, event, ms, what = event) {
  let handler;
  const promise = new Promise((resolve) => {
    handler = (ctx) => resolve(ctx);
    emitter.once(event, handler);
  });
  return withTimeout(promise, ms, what).finally(() => emitter.removeListener(event, handler));
}

/**
 * Calls the server HTTP API method `method` at `${apiUrl}/api/${method}`
 * with `params` (5 s bound) and returns its `result`, failing the test when
 * the reply has none.
 */
export async function serverApi(apiUrl, apiKey, method, params) {
  const response = await withTimeout(
    fetch(`${apiUrl}/api/${method}`, {
      method: 'POST',
      headers: { 'X-API-Key': apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
    }),
    5_000,
    `API ${method}`,
  );
  const body = await response.json();
  assert.ok(body.result, `${method} ${JSON.stringify(params)}: ${JSON.stringify(body)}`);
  return body.result;
}

/** A WebSocket class (for the SDK's `websocket` option) adding the bytes of every frame its sockets receive to `counter.bytes`. */
export function countingWebSocket(counter) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('message', (data) => {
        counter.bytes += data.byteLength;
      });
    }
  };
}

/**
 * Creates clients for one test and disconnects them all afterwards, so
 * node's event loop empties and the process exits.
 */
export class ClientPool {
  constructor(protocol) {
    this.protocol = protocol;
    this.clients = [];
  }

  /** A client (not yet connected) with short reconnect delays. */
  client(url, options = {}) {
    const client = new this.protocol.Centrifuge(url, {
      websocket: WebSocket,
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      timeout: 5000,
      debug: process.env.CENTRIFUGE_DEBUG === '1',
      ...options,
    });
    // An unhandled 'error' event must not crash the test process.
    client.on('error', () => {});
    this.clients.push(client);
    return client;
  }

  disconnectAll() {
    for (const client of this.clients) {
      client.disconnect();
      client.removeAllListeners();
    }
    this.clients = [];
  }
}
