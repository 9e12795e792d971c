// The application backend of tests/shared_poll.rs (not a test file): answers
// the shared_poll_refresh proxy (Centrifugo v6.9's HTTP JSON shape) from a
// state the scenario sets, and counts what it was asked. Listens on
// 127.0.0.1 on a free port and prints `PORT <n>` on its first line.
//
//   POST /refresh  {channel, items: [{key, version}]} -> {result: {items}}:
//                  versioned keys (set with a version) only when newer than
//                  the asked version; removed keys as {key, removed: true}
//   POST /set      {channel, key, data, version?}   sets a key
//   POST /remove   {channel, key}                  marks a key removed
//   POST /polls    {channel} -> {polls: {key: times asked}}

import http from 'node:http';

const state = new Map(); // channel -> Map(key -> {data, version, removed})
const polls = new Map(); // channel -> Map(key -> count)

function keysOf(channel) {
  if (!state.has(channel)) state.set(channel, new Map());
  return state.get(channel);
}

function answer(res, body) {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    } catch {
      res.writeHead(400).end();
      return;
    }
    const channel = body.channel || '';
    switch (req.url) {
      case '/refresh': {
        const keys = keysOf(channel);
        if (!polls.has(channel)) polls.set(channel, new Map());
        const counts = polls.get(channel);
        const items = [];
        for (const item of body.items || []) {
          counts.set(item.key, (counts.get(item.key) || 0) + 1);
          const entry = keys.get(item.key);
          if (!entry) continue;
          if (entry.removed) {
            items.push({ key: item.key, removed: true });
          } else if (entry.version) {
            if (entry.version > (item.version || 0)) items.push({ key: item.key, data: entry.data, version: entry.version });
          } else {
            items.push({ key: item.key, data: entry.data });
          }
        }
        answer(res, { result: { items } });
        return;
      }
      case '/set':
        keysOf(channel).set(body.key, { data: body.data, version: body.version || 0, removed: false });
        answer(res, {});
        return;
      case '/remove':
        keysOf(channel).set(body.key, { removed: true });
        answer(res, {});
        return;
      case '/polls':
        answer(res, { polls: Object.fromEntries(polls.get(channel) || []) });
        return;
      default:
        res.writeHead(404).end();
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
