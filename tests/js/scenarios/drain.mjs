// centrifuge-js behind a small TCP balancer: when gateway A drains (3001),
// the SDK reconnects through the balancer and lands on gateway B.
// Env: BACKENDS (host:port,host:port), TOKEN_SECRET, READY_FILE (written once
// connected to A, so the Rust side knows when to SIGTERM A).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';

const backends = process.env.BACKENDS.split(',').map((b) => { const [host, port] = b.split(':'); return { host, port: Number(port) }; });
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function token(sub) {
  const h = b64({ alg: 'HS256', typ: 'JWT' }), p = b64({ sub });
  return `${h}.${p}.${crypto.createHmac('sha256', process.env.TOKEN_SECRET).update(`${h}.${p}`).digest('base64url')}`;
}
const within = (ms, what, promise) => Promise.race([promise, new Promise((_, no) => setTimeout(() => no(new Error(`timeout: ${what}`)), ms))]);

// Forwards each connection to the first backend that accepts it.
function balancer() {
  const used = [];
  const server = net.createServer((client) => {
    client.pause();
    const attempt = (i) => {
      if (i >= backends.length) { client.destroy(); return; }
      const upstream = net.connect(backends[i]);
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        used.push(i);
        client.pipe(upstream); upstream.pipe(client); client.resume();
        client.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      upstream.once('error', () => { upstream.destroy(); if (!connected) attempt(i + 1); });
    };
    attempt(0);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, used, port: server.address().port })));
}

test('a draining gateway sends 3001 and the SDK reconnects to another gateway', async () => {
  const lb = await balancer();
  const c = new Centrifuge(`ws://127.0.0.1:${lb.port}/connection/websocket`, {
    websocket: WebSocket, token: token('drainee'), minReconnectDelay: 50, maxReconnectDelay: 200,
  });
  const codes = [];
  c.on('connecting', (ctx) => codes.push(ctx.code));
  c.on('disconnected', (ctx) => codes.push(`disconnected:${ctx.code}`));
  c.on('error', (ctx) => codes.push(`error:${ctx.error && ctx.error.message}`));
  try {
    await within(5000, 'first connect', new Promise((ok) => { c.once('connected', ok); c.connect(); }));
    assert.deepEqual(lb.used, [0], 'first connection goes to gateway A');
    const again = new Promise((ok) => c.once('connected', ok));
    fs.writeFileSync(process.env.READY_FILE, 'connected');
    await within(10000, 'reconnect after drain', again).catch((e) => {
      throw new Error(`${e.message}; events ${JSON.stringify(codes)}; backends used ${JSON.stringify(lb.used)}`);
    });
    assert.ok(codes.includes(3001), `connecting events: ${JSON.stringify(codes)}`);
    assert.equal(lb.used[lb.used.length - 1], 1, `reconnected through gateway B: ${JSON.stringify(lb.used)}`);
  } finally {
    c.disconnect();
    lb.server.close();
  }
});
