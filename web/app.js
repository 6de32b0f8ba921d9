// The holdfast dashboard: an operator's console over the HTTP API. Plain browser modules, no
// build step (web/ui/*.js). The lock table is read from /v1/locks and read again, throttled, when
// /v1/events says something changed (and every few seconds, to see renewals and expiries).

import { ApiError, api, identify, needsToken, session, setToken, text } from './ui/api.js';
import { Charts, SAMPLE_MS } from './ui/charts.js';
import { DetailPanel } from './ui/detail.js';
import { clock } from './ui/format.js';
import { renderHistory } from './ui/history.js';
import { LockList } from './ui/list.js';
import { EventStream } from './ui/stream.js';
import { UsualDurations } from './ui/stuck.js';
import { branchPaths, buildTree } from './ui/tree.js';

const $ = (id) => document.getElementById(id);
const PERIODIC_MS = 5000;
const METRICS_MS = 5000;
const USUAL_MS = 30_000;

const state = {
  table: { locks: [], waiters: [] },
  history: [],
  skewMs: 0,
  query: '',
  sharedByKey: new Map(),
  /** fence -> { expiresAt, count, firstSeen, lastAt } */
  renewals: new Map(),
  root: null,
  loadedAt: 0,
};
const usual = new UsualDurations();
const now = () => Date.now() + state.skewMs;
const sharedCount = (key) => state.sharedByKey.get(key) ?? 0;
const stuck = (key, heldMs) => usual.stuck(key, heldMs);

const charts = new Charts($('charts'));
const list = new LockList($('tree'), {
  now, sharedCount, stuck,
  onOpen: (row) => (row.kind === 'waiter' ? detail.showKey(row.node.path) : detail.showLease((row.item ?? row.node.holders[0]).fence)),
});
const detail = new DetailPanel($('detail'), {
  table: () => state.table, now, sharedCount, stuck,
  renewals: (fence) => state.renewals.get(fence) ?? null,
  done: (sentence) => {
    notice(sentence);
    requestRefresh();
  },
  closed: () => $('tree').focus(),
});

function notice(sentence) {
  $('notice').textContent = sentence;
  $('notice').hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => ($('notice').hidden = true), 8000);
}

function showError(message) {
  $('error').hidden = !message;
  $('error').textContent = message || '';
}

function noteRenewals(locks) {
  const seen = new Set();
  const at = new Date(now()).toISOString();
  for (const lock of locks) {
    if (seen.has(lock.fence)) continue;
    seen.add(lock.fence);
    const known = state.renewals.get(lock.fence);
    if (!known) state.renewals.set(lock.fence, { expiresAt: lock.expiresAt, count: 0, firstSeen: at, lastAt: null });
    else if (Date.parse(lock.expiresAt) > Date.parse(known.expiresAt)) {
      known.count += 1;
      known.lastAt = at;
      known.expiresAt = lock.expiresAt;
    }
  }
  for (const fence of state.renewals.keys()) if (!seen.has(fence)) state.renewals.delete(fence);
}

function rebuild() {
  state.root = buildTree(state.table, state.query);
  list.setTree(state.root, state.query.trim() !== '');
  const held = new Set(state.table.locks.map((l) => l.fence)).size;
  $('locks-count').textContent = state.query.trim() ? `${state.root.held} of ${state.table.locks.length} shown` : `${state.table.locks.length} keys held by ${held} lease${held === 1 ? '' : 's'}, ${state.table.waiters.length} waiting`;
  const empty = state.root.held + state.root.waiting === 0;
  $('tree-empty').hidden = !empty;
  $('tree-empty').textContent = state.query.trim() ? `Nothing held or waiting matches “${state.query.trim()}”.` : 'No locks held, nobody waiting.';
  renderHistory($('history'), state.history, state.query);
}

function askForToken(why) {
  $('token-box').hidden = false;
  $('token-why').textContent = why;
}

async function load() {
  if (needsToken()) {
    // Keeps a more telling sentence (a refused token, a sign-out) when one is shown.
    if (!$('token-why').textContent) askForToken('This server needs a token. It is kept in this tab only (session storage).');
    return;
  }
  const [table, history] = await Promise.all([api('GET', '/v1/locks'), api('GET', '/v1/history?limit=100')]);
  state.skewMs = Date.parse(table.now) - Date.now();
  state.table = table;
  state.history = history.events;
  state.loadedAt = Date.now();
  state.sharedByKey = new Map();
  for (const lock of table.locks) if (lock.mode === 'shared') state.sharedByKey.set(lock.key, sharedCount(lock.key) + 1);
  noteRenewals(table.locks);
  charts.table(table);
  rebuild();
  detail.render(true);
}

// Refreshes are throttled to leave the page idle at least half the time under a burst of events.
let inFlight = false;
let again = false;
let lastDurationMs = 0;
let lastEndedAt = 0;
let refreshTimer = null;

function requestRefresh() {
  if (inFlight) {
    again = true;
    return;
  }
  if (refreshTimer !== null) return;
  const gap = Math.min(2000, Math.max(100, 2 * lastDurationMs));
  const wait = Math.max(0, lastEndedAt + gap - Date.now());
  refreshTimer = setTimeout(runRefresh, wait);
}

async function runRefresh() {
  refreshTimer = null;
  inFlight = true;
  const started = performance.now();
  try {
    await load();
    showError('');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      tokenRefused(error.message);
      showError('');
    } else {
      const asOf = state.loadedAt ? ` The table shows the state as of ${clock(new Date(state.loadedAt).toISOString())}.` : '';
      showError(`${error.message || error}.${asOf}`);
    }
  } finally {
    inFlight = false;
    lastDurationMs = performance.now() - started;
    lastEndedAt = Date.now();
    if (again) {
      again = false;
      requestRefresh();
    }
  }
}

function setLive(live, text) {
  $('dot').className = `dot ${live ? 'live' : 'down'}`;
  document.body.classList.toggle('stale', !live);
  $('status').textContent = text;
}

const stream = new EventStream({
  onEvent: (event) => {
    if (event.type === 'reset') void reidentify();
    else charts.event(event);
    requestRefresh();
  },
  onUp: () => {
    setLive(true, 'live');
    $('stream-down').hidden = true;
    // Whatever happened while the stream was down (or the server restarted) is read again.
    void reidentify();
  },
  onRefused: (message) => tokenRefused(message),
  onDown: ({ since, attempt, retryInMs, reason }) => {
    setLive(false, 'reconnecting');
    $('stream-down').hidden = false;
    $('stream-down').textContent = `Live updates are down since ${clock(new Date(since).toISOString())} (${reason}). Reconnecting: attempt ${attempt}, next in ${Math.round(retryInMs / 100) / 10} s. The table may be stale.`;
  },
});

/** Reads who this tab is (the server may have restarted with other tokens), then the table. */
async function reidentify() {
  try {
    await identify();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) tokenRefused(error.message);
    else showError(`${error.message}.`);
  }
  showWho();
  requestRefresh();
}

/** A refused token is dropped (no more refused calls) and the page asks for another. */
function tokenRefused(message) {
  setToken('');
  session.who = null;
  stream.stop();
  showWho();
  askForToken(`The server refused the token (${message}). Enter another.`);
}

function showWho() {
  const info = session.info;
  if (info) $('store').textContent = `${info.store.kind}${info.store.durable ? ', durable' : ''} · v${info.version}`;
  const who = session.who;
  $('who').textContent = !who ? '' : info?.tokens ? `signed in as ${who.name}${who.admin ? ' (admin)' : ' (read only)'}` : 'no tokens on this server: loopback admin';
  $('token-box').hidden = Boolean(who) || !info?.tokens;
  $('sign-out').hidden = !session.token;
  if (who) $('token-why').textContent = '';
  detail.render();
}

async function scrapeMetrics() {
  if (needsToken()) return;
  try {
    charts.metrics(await text('/metrics'));
  } catch (error) {
    charts.metricsFailed(error.message);
  }
}

async function learnUsual() {
  if (needsToken()) return;
  try {
    usual.learn((await api('GET', '/v1/history?limit=2000')).events);
  } catch {
    // The next round tries again; the table's refresh reports an unreachable server.
  }
}

function wire() {
  $('search').addEventListener('input', () => {
    state.query = $('search').value;
    rebuild();
  });
  $('token-box').addEventListener('submit', async (e) => {
    e.preventDefault();
    setToken($('token').value.trim());
    $('token').value = '';
    await reidentify();
    if (!needsToken() && session.who) stream.restart();
  });
  $('sign-out').addEventListener('click', async () => {
    setToken('');
    session.who = null;
    stream.stop();
    detail.close();
    state.table = { locks: [], waiters: [] };
    state.history = [];
    rebuild();
    showWho();
    askForToken('Signed out: the token was removed from this tab.');
  });
  $('expand-all').addEventListener('click', () => list.expandAll());
  $('collapse-all').addEventListener('click', () => state.root && list.collapseAll(branchPaths(state.root)));
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !['INPUT', 'TEXTAREA'].includes(document.activeElement?.tagName) && !$('confirm').open) {
      e.preventDefault();
      $('search').focus();
    }
  });
  setInterval(() => {
    list.render();
    detail.tick();
  }, 1000);
  setInterval(() => requestRefresh(), PERIODIC_MS);
  setInterval(() => charts.sample(), SAMPLE_MS);
  setInterval(scrapeMetrics, METRICS_MS);
  setInterval(learnUsual, USUAL_MS);
}

async function start() {
  wire();
  charts.draw();
  await reidentify();
  void scrapeMetrics();
  void learnUsual();
  if (!needsToken()) stream.start();
}

void start();
