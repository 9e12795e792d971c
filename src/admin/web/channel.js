// The channel view: the page connects to the gateway as a Centrifugo client
// (centrifuge-js, with tokens the gateway issues to a logged-in admin),
// subscribes to a channel and shows its publications, joins and leaves as
// they arrive, with its presence and history from the server API.
import { request, gatewaySettings, Unauthorized } from './app.js';

const $ = (id) => document.getElementById(id);
/** Most events kept in the live list. */
const KEEP = 500;
let client = null;
let watched = '';
let historyTimer = null;

export function init() {
  $('channel-form').addEventListener('submit', (event) => { event.preventDefault(); watch($('channel-name').value.trim()); });
  $('channel-stop').addEventListener('click', () => stop());
  $('channel-refresh').addEventListener('click', () => refreshSide());
}

export function start() {
  const url = $('channel-ws-url');
  const settings = gatewaySettings();
  if (!url.value && settings) {
    const scheme = settings.tls ? 'wss' : 'ws';
    const host = location.port === String(settings.client_port) ? location.host : `${location.hostname}:${settings.client_port}`;
    url.value = `${scheme}://${host}${settings.websocket_path}`;
  }
}

export function stop() {
  client?.disconnect();
  client = null;
  watched = '';
  $('channel-status').textContent = '';
}

async function tokens(channel) {
  const { status, json, text } = await request('admin/channel_token', { method: 'POST', body: { channel } });
  if (status !== 200) throw new Error(json?.error ?? text);
  return json;
}

function log(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()} ${kind} ${text}`;
  const list = $('channel-log');
  list.prepend(li);
  while (list.children.length > KEEP) list.lastChild.remove();
}

function describeInfo(info) {
  return info ? `user=${info.user} client=${info.client}` : '';
}

async function watch(channel) {
  if (!channel) return;
  stop();
  $('channel-log').replaceChildren();
  $('channel-status').textContent = 'connecting…';
  let first;
  try {
    first = await tokens(channel);
  } catch (e) {
    if (!(e instanceof Unauthorized)) $('channel-status').textContent = `cannot watch: ${e.message}`;
    return;
  }
  watched = channel;
  client = new Centrifuge($('channel-ws-url').value, {
    token: first.connection_token,
    getToken: async () => (await tokens(channel)).connection_token,
  });
  const sub = client.newSubscription(channel, {
    token: first.subscription_token,
    getToken: async () => (await tokens(channel)).subscription_token,
    joinLeave: true,
  });
  sub.on('publication', (ctx) => {
    const at = ctx.offset ? ` offset=${ctx.offset}` : '';
    log('pub', `${JSON.stringify(ctx.data)}${at}${ctx.info ? ` from ${describeInfo(ctx.info)}` : ''}${ctx.tags ? ` tags=${JSON.stringify(ctx.tags)}` : ''}`);
    clearTimeout(historyTimer);
    historyTimer = setTimeout(refreshHistory, 300);
  });
  sub.on('join', (ctx) => { log('join', describeInfo(ctx.info)); refreshPresence(); });
  sub.on('leave', (ctx) => { log('leave', describeInfo(ctx.info)); refreshPresence(); });
  sub.on('subscribed', () => { $('channel-status').textContent = `subscribed to ${channel}`; refreshSide(); });
  sub.on('error', (ctx) => { $('channel-status').textContent = `subscription error: ${ctx.error?.message ?? ''}`; });
  sub.on('unsubscribed', (ctx) => { $('channel-status').textContent = `unsubscribed: ${ctx.reason ?? ''}`; });
  client.on('disconnected', (ctx) => { if (watched) $('channel-status').textContent = `disconnected: ${ctx.reason}`; });
  client.on('connecting', (ctx) => {
    // A refused upgrade looks like a transport error to the page: the usual
    // cause is this page's origin missing from NATSGATE_ALLOWED_ORIGINS.
    const hint = ctx.code === 2 ? ` (transport closed: is ${location.origin} in NATSGATE_ALLOWED_ORIGINS?)` : '';
    $('channel-status').textContent = `connecting…${hint}`;
  });
  sub.subscribe();
  client.connect();
}

function refreshSide() {
  refreshPresence();
  refreshHistory();
}

async function refreshPresence() {
  if (!watched) return;
  const { json } = await request('admin/api/presence', { method: 'POST', body: { channel: watched } }).catch(() => ({}));
  const rows = [];
  if (json?.result) {
    for (const [id, info] of Object.entries(json.result.presence ?? {})) {
      const tr = document.createElement('tr');
      for (const text of [info.user, id]) { const td = document.createElement('td'); td.textContent = text; tr.append(td); }
      rows.push(tr);
    }
  }
  $('channel-presence').replaceChildren(...rows);
  $('channel-presence-note').textContent = json?.error ? `presence: ${json.error.message} (${json.error.code})` : `${rows.length} client(s)`;
}

async function refreshHistory() {
  if (!watched) return;
  const body = { channel: watched, limit: 20, reverse: true };
  const { json } = await request('admin/api/history', { method: 'POST', body }).catch(() => ({}));
  const items = (json?.result?.publications ?? []).map((p) => {
    const li = document.createElement('li');
    li.textContent = `${p.offset ?? ''} ${JSON.stringify(p.data)}`;
    return li;
  });
  $('channel-history').replaceChildren(...items);
  $('channel-history-note').textContent = json?.error ? `history: ${json.error.message} (${json.error.code})` : '';
}
