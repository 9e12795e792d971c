// The actions page: a form per server API method; runs it through
// `admin/api/<method>` (the gateway's own API dispatcher) and shows the
// request and the response.
import { request, Unauthorized } from './app.js';

const $ = (id) => document.getElementById(id);

// Field kinds: text, json, list (comma-separated), number, bool.
const user = { name: 'user', kind: 'text', required: true };
const channel = { name: 'channel', kind: 'text', required: true, placeholder: 'chat:lobby' };
const client = { name: 'client', kind: 'text', hint: 'one connection only' };
const METHODS = {
  publish: [channel, { name: 'data', kind: 'json', value: '{"text": "hello"}' }, { name: 'b64data', kind: 'text', hint: 'wins over data' },
    { name: 'tags', kind: 'json', hint: '{"key": "value"}' }, { name: 'idempotency_key', kind: 'text' }, { name: 'skip_history', kind: 'bool' }],
  broadcast: [{ name: 'channels', kind: 'list', required: true, placeholder: 'news, chat:lobby' },
    { name: 'data', kind: 'json', value: '{"text": "hello all"}' }, { name: 'b64data', kind: 'text' },
    { name: 'tags', kind: 'json' }, { name: 'idempotency_key', kind: 'text' }, { name: 'skip_history', kind: 'bool' }],
  subscribe: [user, channel, client],
  unsubscribe: [user, channel, client],
  disconnect: [user, client, { name: 'code', kind: 'number', hint: '3000-4999', path: ['disconnect', 'code'] },
    { name: 'reason', kind: 'text', path: ['disconnect', 'reason'] }],
  refresh: [user, client, { name: 'expired', kind: 'bool' }, { name: 'expire_at', kind: 'number', hint: 'Unix seconds' }],
  presence: [channel],
  presence_stats: [channel],
  history: [channel, { name: 'limit', kind: 'number', value: '10' }, { name: 'reverse', kind: 'bool' },
    { name: 'offset', kind: 'number', hint: 'since', path: ['since', 'offset'] }, { name: 'epoch', kind: 'text', hint: 'since', path: ['since', 'epoch'] }],
  history_remove: [channel],
  channels: [{ name: 'pattern', kind: 'text', hint: 'glob, e.g. chat:*' }],
  info: [],
  batch: [{ name: 'commands', kind: 'json', required: true,
    value: '[\n  {"publish": {"channel": "news", "data": {"n": 1}}},\n  {"channels": {}}\n]' }, { name: 'parallel', kind: 'bool' }],
};

export function init() {
  const select = $('action-method');
  for (const method of Object.keys(METHODS)) select.append(new Option(method, method));
  select.addEventListener('change', () => buildForm(select.value));
  $('action-form').addEventListener('submit', (event) => { event.preventDefault(); run(); });
  buildForm(select.value);
}

export function start() {}

function buildForm(method) {
  const fields = METHODS[method].map((field) => {
    const label = document.createElement('label');
    let input;
    if (field.kind === 'bool') {
      label.className = 'check';
      input = document.createElement('input');
      input.type = 'checkbox';
    } else if (field.kind === 'json') {
      input = document.createElement('textarea');
      input.value = field.value ?? '';
      input.rows = field.name === 'commands' ? 6 : 2;
    } else {
      input = document.createElement('input');
      input.type = field.kind === 'number' ? 'number' : 'text';
      input.value = field.value ?? '';
      if (field.placeholder) input.placeholder = field.placeholder;
    }
    input.id = `field-${field.name}`;
    input.required = !!field.required;
    label.append(`${field.name}${field.hint ? ` (${field.hint})` : ''}`, input);
    return label;
  });
  $('action-fields').replaceChildren(...fields);
}

/** The method's params from the form; throws on JSON that does not parse. */
function params(method) {
  const out = {};
  for (const field of METHODS[method]) {
    const input = $(`field-${field.name}`);
    let value;
    switch (field.kind) {
      case 'bool': if (!input.checked) continue; value = true; break;
      case 'json':
        if (!input.value.trim()) continue;
        try { value = JSON.parse(input.value); } catch (e) { throw new Error(`${field.name} is not JSON: ${e.message}`); }
        break;
      case 'list': value = input.value.split(',').map((s) => s.trim()).filter(Boolean); if (!value.length) continue; break;
      case 'number': if (input.value === '') continue; value = Number(input.value); break;
      default: if (input.value === '') continue; value = input.value;
    }
    const path = field.path ?? [field.name];
    let target = out;
    for (const key of path.slice(0, -1)) target = target[key] ??= {};
    target[path[path.length - 1]] = value;
  }
  return out;
}

async function run() {
  const method = $('action-method').value;
  let body;
  try {
    body = params(method);
  } catch (e) {
    $('action-response').textContent = e.message;
    return;
  }
  $('action-request').textContent = `POST /api/${method}\n${JSON.stringify(body, null, 2)}`;
  $('action-response').textContent = '…';
  try {
    const { status, text, json } = await request(`admin/api/${method}`, { method: 'POST', body });
    $('action-response').textContent = `HTTP ${status}\n${json ? JSON.stringify(json, null, 2) : text}`;
  } catch (e) {
    if (!(e instanceof Unauthorized)) $('action-response').textContent = `failed: ${e.message}`;
  }
}
