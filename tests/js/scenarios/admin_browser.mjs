// The admin web interface in headless Chromium (Debian's, driven by
// playwright-core), against two gateways on one nats-server: login refused
// and accepted, the cluster page with both gateways and the connections
// this test made, charts with data points, a publish from the actions page
// reaching a centrifuge-python client on the other gateway, and the channel
// view showing a publication made through the HTTP API. Screenshots go to
// SCREENSHOT_DIR. Driven by tests/admin.rs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { GATEWAY_URLS, PROTOCOLS, ClientPool, connToken, nextEvent, withTimeout } from '../helpers.mjs';

const ADMIN_URLS = process.env.ADMIN_URLS.split(',');
const API_URLS = process.env.API_URLS.split(',');
const { ADMIN_PASSWORD, API_KEY, PYTHON, PY_LISTENER, SCREENSHOT_DIR } = process.env;
const PY_CHANNEL = 'chat:admin-py';
const VIEW_CHANNEL = 'chat:admin-view';
/** Clients this test holds on gateway A and B (B also has the Python one). */
const ON_A = 4;
const ON_B = 2;
const WAIT = 15000;

let browser;
let page;
let profile;
let python;
let pythonLines;
const pool = new ClientPool(PROTOCOLS[0]);

/** The next line from the Python client that `matches`, bounded. */
function pythonEvent(matches, what) {
  return withTimeout(new Promise((resolve) => {
    const check = (line) => {
      let event;
      try { event = JSON.parse(line); } catch { return; }
      if (matches(event)) { pythonLines.off('line', check); resolve(event); }
    };
    pythonLines.on('line', check);
  }), WAIT, what);
}

async function shot(name) {
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  // Connections the cluster page must count.
  const connected = [];
  for (let i = 0; i < ON_A + ON_B; i += 1) {
    const client = pool.client(GATEWAY_URLS[i < ON_A ? 0 : 1], { token: connToken(`user-${i}`) });
    connected.push(nextEvent(client, 'connected', WAIT, `client ${i} connected`));
    client.connect();
  }
  await Promise.all(connected);

  python = spawn(PYTHON, [PY_LISTENER], {
    env: { ...process.env, URL: GATEWAY_URLS[1], TOKEN: connToken('py-user'), CHANNEL: PY_CHANNEL },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  pythonLines = readline.createInterface({ input: python.stdout });
  await pythonEvent((e) => e.event === 'subscribed', 'the Python client subscribed');

  profile = mkdtempSync(path.join(tmpdir(), 'natsgate-admin-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`page console: ${m.text()}`); });
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  python?.stdin.end();
  python?.kill();
  pool.disconnectAll();
});

test('a wrong password is refused', async () => {
  await page.goto(ADMIN_URLS[0]);
  await page.fill('#login-password', `${ADMIN_PASSWORD}-wrong`);
  await page.click('#login-submit');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('Wrong password'));
  assert.equal(await page.isVisible('#nav'), false, 'still logged out');
  await shot('login-refused');
});

test('the right password logs in; the cluster page shows both gateways with their connections', async () => {
  await page.fill('#login-password', ADMIN_PASSWORD);
  await page.click('#login-submit');
  await page.waitForSelector('#page-cluster:not([hidden])');
  await page.waitForSelector(`#cluster-rows tr[data-name="gw-a"][data-clients="${ON_A}"]`);
  await page.waitForSelector(`#cluster-rows tr[data-name="gw-b"][data-clients="${ON_B + 1}"]`);
  const rows = await page.$$eval('#cluster-rows tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(rows.length, 2, `two gateways: ${JSON.stringify(rows)}`);
  for (const row of rows) assert.equal(row[7], 'connected', `NATS state: ${JSON.stringify(row)}`);
  assert.match(rows[0][8], /MiB|KiB/, 'memory is shown');
});

test('the charts have data points', async () => {
  // A few seconds of samples: rates need two readings.
  await page.waitForFunction(() => ['chart-connections', 'chart-messages', 'chart-lag']
    .every((id) => Number(document.getElementById(id).dataset.points) >= 4));
  const canvases = await page.$$eval('.chart canvas', (cs) => cs.length);
  assert.ok(canvases >= 3, `three uPlot canvases, got ${canvases}`);
  const legend = await page.$$eval('#chart-connections .u-legend .u-series', (s) => s.map((e) => e.textContent));
  assert.ok(legend.some((t) => t.includes('gw-a')) && legend.some((t) => t.includes('gw-b')), `legend: ${legend}`);
  await shot('cluster');
});

test('a publish from the actions page reaches a centrifuge-python client on the other gateway', async () => {
  await page.click('nav a[data-page="actions"]');
  await page.selectOption('#action-method', 'publish');
  await page.fill('#field-channel', PY_CHANNEL);
  await page.fill('#field-data', '{"text": "from the admin page"}');
  const received = pythonEvent((e) => e.event === 'publication', 'the publication at the Python client');
  await page.click('#action-run');
  await page.waitForFunction(() => document.getElementById('action-response').textContent.includes('"result"'));
  assert.match(await page.textContent('#action-request'), /POST \/api\/publish/);
  const event = await received;
  assert.deepEqual(event.data, { text: 'from the admin page' });
  await shot('actions');
});

test('the channel view shows an HTTP API publication, a join and the presence live', async () => {
  await page.click('nav a[data-page="channel"]');
  await page.fill('#channel-name', VIEW_CHANNEL);
  await page.click('#channel-watch');
  await page.waitForFunction(() => document.getElementById('channel-status').textContent.startsWith('subscribed to'));

  const joiner = pool.client(GATEWAY_URLS[1], { token: connToken('joiner') });
  const sub = joiner.newSubscription(VIEW_CHANNEL);
  const subscribed = nextEvent(sub, 'subscribed', WAIT, 'joiner subscribed');
  sub.subscribe();
  joiner.connect();
  await subscribed;
  await page.waitForFunction(() => [...document.querySelectorAll('#channel-log li.join')].some((li) => li.textContent.includes('user=joiner')));

  const response = await fetch(`${API_URLS[1]}/publish`, {
    method: 'POST', headers: { 'X-API-Key': API_KEY },
    body: JSON.stringify({ channel: VIEW_CHANNEL, data: { text: 'via the HTTP API' } }),
  });
  assert.equal(response.status, 200);
  assert.ok((await response.json()).result, 'published');
  await page.waitForFunction(() => [...document.querySelectorAll('#channel-log li.pub')].some((li) => li.textContent.includes('via the HTTP API')));
  await page.waitForFunction(() => document.getElementById('channel-history').textContent.includes('via the HTTP API'));
  await page.click('#channel-refresh');
  await page.waitForFunction(() => {
    const users = [...document.querySelectorAll('#channel-presence tr td:first-child')].map((td) => td.textContent);
    return users.includes('joiner') && users.includes('natsgate-admin');
  });
  await shot('channel');
});
