// The cluster page: every live gateway (the `admin/cluster` survey) in a
// table refreshed every second, and uPlot charts of connections, messages
// sent per second and mean delivery lag per gateway over the last minutes.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { request, Unauthorized } from './app.js';

const REFRESH_MS = 1000;
/** Samples kept for the charts: ten minutes. */
const KEEP = 600;
const COLORS = ['#2f6fde', '#e67e22', '#1e8e4e', '#8e44ad', '#c0392b', '#16a085', '#7f8c8d', '#d35400'];
const $ = (id) => document.getElementById(id);

let timer = null;
/** Sample times (Unix seconds) and, per gateway uid, its name and aligned series. */
const times = [];
const series = new Map();
/** The previous reading of each gateway, for rates. */
const previous = new Map();
const charts = {};

export function start() {
  if (timer) return;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

export function stop() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  let reply;
  try {
    reply = await request('admin/cluster');
  } catch (e) {
    if (!(e instanceof Unauthorized)) $('cluster-error').textContent = `cannot reach the gateway: ${e.message}`;
    return;
  }
  if (reply.status !== 200) {
    $('cluster-error').textContent = reply.json?.error ?? reply.text;
    return;
  }
  $('cluster-error').textContent = '';
  const { time_ms: now, nodes } = reply.json;
  record(now, nodes);
  render(nodes);
  $('cluster-updated').textContent = `updated ${new Date(now).toLocaleTimeString()}`;
}

/** Adds one sample per gateway; a rate needs a previous reading. */
function record(now, nodes) {
  const t = now / 1000;
  times.push(t);
  const seen = new Set();
  for (const node of nodes) {
    seen.add(node.uid);
    if (!series.has(node.uid)) {
      series.set(node.uid, { name: node.name, conns: times.slice(0, -1).map(() => null), rate: [], lag: [] });
      const s = series.get(node.uid);
      s.rate = s.conns.slice();
      s.lag = s.conns.slice();
    }
    const s = series.get(node.uid);
    const before = previous.get(node.uid);
    let rate = null;
    let lag = null;
    if (before && t > before.t) {
      rate = Math.max(0, (node.messages_sent - before.messages_sent) / (t - before.t));
      const count = node.delivery_lag_count - before.delivery_lag_count;
      lag = count > 0 ? ((node.delivery_lag_sum - before.delivery_lag_sum) / count) * 1000 : 0;
    }
    previous.set(node.uid, { t, messages_sent: node.messages_sent, delivery_lag_sum: node.delivery_lag_sum, delivery_lag_count: node.delivery_lag_count });
    node.rate = rate;
    node.lag = lag;
    s.conns.push(node.num_clients);
    s.rate.push(rate);
    s.lag.push(lag);
  }
  for (const [uid, s] of series) {
    if (!seen.has(uid)) { s.conns.push(null); s.rate.push(null); s.lag.push(null); }
  }
  if (times.length > KEEP) {
    times.shift();
    for (const [uid, s] of series) {
      s.conns.shift(); s.rate.shift(); s.lag.shift();
      if (s.conns.every((v) => v === null)) { series.delete(uid); previous.delete(uid); }
    }
  }
  drawCharts();
}

function drawCharts() {
  const uids = [...series.keys()];
  const plot = (id, key, label) => {
    const host = $(id);
    const data = [times.slice(), ...uids.map((uid) => series.get(uid)[key].slice())];
    const signature = uids.join(',');
    let chart = charts[id];
    if (!chart || chart.signature !== signature) {
      chart?.plot.destroy();
      const options = {
        width: Math.max(360, host.clientWidth - 30), height: 220,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        series: [{}, ...uids.map((uid, i) => ({
          label: series.get(uid).name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
          value: (u, v) => (v == null ? '–' : `${+v.toFixed(2)} ${label}`),
        }))],
        axes: [{}, { size: 60 }],
      };
      chart = charts[id] = { plot: new uPlot(options, data, host), signature };
    } else {
      chart.plot.setData(data);
    }
    // How many samples the chart holds, for people and tests alike.
    host.dataset.points = String(times.length);
  };
  plot('chart-connections', 'conns', '');
  plot('chart-messages', 'rate', '/s');
  plot('chart-lag', 'lag', 'ms');
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

function bytes(n) {
  if (!n) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function cell(text, cls = '') {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function render(nodes) {
  const rows = nodes.map((node) => {
    const tr = document.createElement('tr');
    tr.dataset.name = node.name;
    tr.dataset.clients = String(node.num_clients);
    tr.append(
      cell(node.name, 'name'), cell(node.version), cell(duration(node.uptime)),
      cell(node.num_clients, 'num clients'), cell(node.num_users, 'num'), cell(node.num_subs, 'num'),
      cell(node.num_channels, 'num'),
      cell(node.nats_connected ? 'connected' : 'disconnected', node.nats_connected ? 'ok' : 'bad'),
      cell(bytes(node.rss_bytes), 'num'),
      cell(node.rate == null ? '–' : node.rate.toFixed(1), 'num'),
      cell(node.lag == null ? '–' : `${node.lag.toFixed(2)} ms`, 'num'),
    );
    return tr;
  });
  $('cluster-rows').replaceChildren(...rows);
  const sum = (key) => nodes.reduce((a, n) => a + n[key], 0);
  $('cluster-total').replaceChildren(
    cell(`${nodes.length} gateway${nodes.length === 1 ? '' : 's'}`), cell(''), cell(''),
    cell(sum('num_clients'), 'num'), cell(''), cell(sum('num_subs'), 'num'), cell(''), cell(''), cell(''), cell(''), cell(''),
  );
}
