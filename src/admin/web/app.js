// The admin app's shell: login, the admin token (kept in sessionStorage and
// renewed while the page is open), requests to the gateway's admin
// endpoints, and switching between the pages.
import * as cluster from './cluster.js';
import * as actions from './actions.js';
import * as channel from './channel.js';

const TOKEN_KEY = 'natsgate-admin-token';
const pages = { cluster, actions, channel };
const $ = (id) => document.getElementById(id);
let settings = null;
let renewTimer = null;

/** Thrown by `request` when the admin token is missing or no longer valid. */
export class Unauthorized extends Error {}

/** Calls an admin endpoint (`path` relative to the app, e.g. `admin/cluster`);
 *  `body` is sent as JSON. Resolves to `{status, text, json}`. */
export async function request(path, { method = 'GET', body } = {}) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `token ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (response.status === 401) {
    showLogin('Your session has ended: log in again.');
    throw new Unauthorized();
  }
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  return { status: response.status, text, json };
}

/** What `admin/settings` said (client port, TLS, ...). */
export function gatewaySettings() { return settings; }

function showLogin(message = '') {
  clearInterval(renewTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  for (const page of Object.values(pages)) page.stop?.();
  document.querySelectorAll('.page').forEach((p) => { p.hidden = true; });
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('whoami').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('login-password').focus();
}

async function enter() {
  const { status, json } = await request('admin/settings');
  if (status !== 200) return showLogin();
  settings = json;
  $('login').hidden = true;
  $('nav').hidden = false;
  $('logout').hidden = settings.insecure;
  $('whoami').textContent = `${settings.name} · natsgate ${settings.version}`;
  clearInterval(renewTimer);
  if (!settings.insecure) renewTimer = setInterval(renew, (settings.token_ttl_secs * 1000) / 2);
  route();
}

async function renew() {
  try {
    const { status, json } = await request('admin/renew', { method: 'POST' });
    if (status === 200) sessionStorage.setItem(TOKEN_KEY, json.token);
  } catch { /* the login page is shown */ }
}

function route() {
  if (!settings) return;
  const name = (location.hash || '#cluster').slice(1);
  const current = pages[name] ? name : 'cluster';
  for (const [key, page] of Object.entries(pages)) {
    const shown = key === current;
    $(`page-${key}`).hidden = !shown;
    document.querySelector(`nav a[data-page="${key}"]`).classList.toggle('active', shown);
    if (shown) page.start(); else page.stop?.();
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  const password = $('login-password').value;
  const response = await fetch('admin/auth', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ password }),
  });
  if (response.status === 200) {
    sessionStorage.setItem(TOKEN_KEY, (await response.json()).token);
    $('login-password').value = '';
    await enter();
  } else if (response.status === 429) {
    $('login-error').textContent = 'Too many failed logins: wait a little and retry.';
  } else {
    $('login-error').textContent = 'Wrong password.';
  }
});

$('logout').addEventListener('click', () => { settings = null; showLogin(); });
window.addEventListener('hashchange', route);
for (const page of Object.values(pages)) page.init?.();
enter().catch(() => {});
