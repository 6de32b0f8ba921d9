// The holdfast dashboard: held locks, waiters with positions and recent history, updated live
// from /v1/events. Plain JavaScript, no build step. The event stream is read with fetch (not
// EventSource) so that a bearer token can be sent in a header, never in a URL.

const $ = (id) => document.getElementById(id);
const state = { prefix: '', token: sessionStorage.getItem('holdfast-token') || '', table: { locks: [], waiters: [] }, history: [], skewMs: 0, lastEventId: '' };
let refreshTimer = null;
let stream = null;

function headers() {
  return state.token ? { authorization: `Bearer ${state.token}` } : {};
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json', ...headers() } });
  if (res.status === 401) {
    $('token-box').hidden = false;
    throw new Error('This server needs a token: enter it above.');
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}

/** "12 s", "4 min", "3 h". */
function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

const serverNow = () => Date.now() + state.skewMs;

function cell(row, text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function modeCell(row, mode, limit) {
  const td = document.createElement('td');
  const badge = document.createElement('span');
  badge.className = `mode ${mode}`;
  badge.textContent = limit === null || limit === undefined ? mode : `${mode} / ${limit}`;
  td.appendChild(badge);
  row.appendChild(td);
}

const messageOf = (metadata) => (metadata && typeof metadata.message === 'string' ? metadata.message : '');

function fill(tableId, rows, render) {
  const body = $(tableId).querySelector('tbody');
  body.replaceChildren(...rows.map(render));
  $(`${tableId}-count`).textContent = String(rows.length);
  $(`${tableId}-empty`).hidden = rows.length > 0;
  $(tableId).hidden = rows.length === 0;
}

function render() {
  const now = serverNow();
  fill('locks', state.table.locks, (lock) => {
    const row = document.createElement('tr');
    cell(row, lock.key, 'key');
    modeCell(row, lock.mode, lock.limit);
    cell(row, lock.owner);
    cell(row, String(lock.fence), 'num');
    const left = Date.parse(lock.expiresAt) - now;
    cell(row, span(left), left < 5000 ? 'num soon' : 'num');
    cell(row, messageOf(lock.metadata), 'msg');
    return row;
  });
  fill('waiters', state.table.waiters, (waiter) => {
    const row = document.createElement('tr');
    cell(row, waiter.key, 'key');
    cell(row, `#${waiter.position}`, 'num');
    modeCell(row, waiter.mode, waiter.limit);
    cell(row, waiter.owner);
    cell(row, span(now - Date.parse(waiter.since)), 'num');
    cell(row, span(Date.parse(waiter.waitUntil) - now), 'num');
    cell(row, messageOf(waiter.metadata), 'msg');
    return row;
  });
  const history = state.history.filter((e) => !state.prefix || e.resources.some((r) => r.key.startsWith(state.prefix)));
  fill('history', history, (event) => {
    const row = document.createElement('tr');
    cell(row, new Date(event.at).toLocaleTimeString(), 'num');
    cell(row, event.reason && event.type === 'released' && event.reason !== 'release' ? `${event.type} (${event.reason})` : event.type, `type ${event.type}`);
    cell(row, event.resources.map((r) => r.key).join(', '), 'key');
    cell(row, event.owner);
    cell(row, String(event.fence), 'num');
    cell(row, event.by && event.by !== event.owner ? event.by : '');
    return row;
  });
}

function showError(error) {
  $('error').hidden = !error;
  $('error').textContent = error ? String(error.message || error) : '';
}

async function refresh() {
  try {
    const query = state.prefix ? `?prefix=${encodeURIComponent(state.prefix)}` : '';
    const [table, history] = await Promise.all([getJson(`/v1/locks${query}`), getJson('/v1/history?limit=100')]);
    state.skewMs = Date.parse(table.now) - Date.now();
    state.table = table;
    state.history = history.events;
    showError(null);
    render();
    if (!stream) follow();
  } catch (error) {
    showError(error);
  }
}

/** Coalesces bursts of events into one refresh. */
function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refresh();
  }, 100);
}

function setStatus(live, text) {
  $('dot').className = `dot ${live ? 'live' : 'down'}`;
  $('status').textContent = text;
}

/** Reads /v1/events with fetch, resuming with Last-Event-ID; reconnects after a break. */
async function follow() {
  const controller = new AbortController();
  stream = controller;
  try {
    const extra = state.lastEventId ? { 'last-event-id': state.lastEventId } : {};
    const res = await fetch('/v1/events', { headers: { accept: 'text/event-stream', ...headers(), ...extra }, signal: controller.signal });
    if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
    setStatus(true, 'live');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of frame.split('\n')) if (line.startsWith('id:')) state.lastEventId = line.slice(3).trim();
        if (frame.split('\n').some((line) => line.startsWith('data:'))) scheduleRefresh();
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  setStatus(false, 'reconnecting');
  stream = null;
  setTimeout(() => {
    if (!stream) refresh();
  }, 2000);
}

async function start() {
  const info = await getJson('/v1/info').catch(() => null);
  if (info) $('store').textContent = `${info.store.kind}${info.store.durable ? ', durable' : ''} · v${info.version}`;
  $('token').value = state.token;
  $('prefix').addEventListener('input', () => {
    state.prefix = $('prefix').value.trim();
    scheduleRefresh();
  });
  $('token').addEventListener('change', () => {
    state.token = $('token').value.trim();
    sessionStorage.setItem('holdfast-token', state.token);
    stream?.abort();
    stream = null;
    refresh();
  });
  render();
  setInterval(render, 1000);
  await refresh();
}

start();
