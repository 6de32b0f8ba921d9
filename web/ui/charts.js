// Small live charts drawn as SVG by hand (no library, no CDN): grants per second and lost leases
// (expired or forced) counted from the event stream, waiters sampled from the lock table, and the
// wait time p50/p99 of this server's queued requests estimated from the Prometheus histogram
// `holdfast_wait_seconds` over the last minute.

import { el, seconds } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const POINTS = 150;
export const SAMPLE_MS = 2000;
const WAIT_WINDOW_MS = 60_000;

/** `holdfast_wait_seconds_bucket{outcome="granted"}` as [[le, cumulative count]], or null. */
export function waitBuckets(metricsText) {
  const buckets = [];
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('holdfast_wait_seconds_bucket{')) continue;
    const labels = line.slice(line.indexOf('{') + 1, line.lastIndexOf('}'));
    if (!/outcome="granted"/.test(labels)) continue;
    const le = /le="([^"]+)"/.exec(labels)?.[1];
    const value = Number(line.slice(line.lastIndexOf('}') + 1));
    if (le !== undefined && Number.isFinite(value)) buckets.push([le === '+Inf' ? Infinity : Number(le), value]);
  }
  return buckets.length ? buckets.sort((a, b) => a[0] - b[0]) : null;
}

/** Prometheus' histogram_quantile over cumulative buckets. */
export function quantile(q, buckets) {
  const total = buckets.at(-1)[1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1e-9, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

function chart(title, unit) {
  const card = el('figure', 'chart');
  const head = el('figcaption');
  const value = el('span', 'value', '—');
  head.append(el('span', 'title', title), value);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${POINTS} 40`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const foot = el('div', 'foot muted', unit);
  card.append(head, svg, foot);
  return { card, value, svg, foot };
}

function line(values, max, className) {
  const path = document.createElementNS(SVG, 'polyline');
  const offset = POINTS - values.length;
  path.setAttribute('points', values.map((v, i) => `${offset + i},${(40 - (Number.isFinite(v) ? v : 0) / max * 37 - 1.5).toFixed(2)}`).join(' '));
  path.setAttribute('class', className);
  path.setAttribute('vector-effect', 'non-scaling-stroke');
  return path;
}

export class Charts {
  constructor(container) {
    this.grants = chart('Grants / s', 'acquired events, all processes');
    this.waiters = chart('Waiters', 'queued requests');
    this.wait = chart('Wait p50 / p99', 'this server, last 60 s');
    this.lost = chart('Lost leases', 'expired or forced, per 2 s');
    container.replaceChildren(this.grants.card, this.waiters.card, this.wait.card, this.lost.card);
    this.series = { grants: [], waiters: [], p50: [], p99: [], lost: [] };
    this.counts = { acquired: 0, lost: 0 };
    this.waiterCount = 0;
    this.scrapes = [];
    this.metricsError = '';
  }

  /** Counts an event of the stream into the current sample. */
  event(e) {
    if (e.type === 'acquired') this.counts.acquired += 1;
    else if (e.type === 'expired' || e.type === 'forced') this.counts.lost += 1;
  }

  /** The lock table's queued requests (a request waiting for several keys counts once). */
  table(table) {
    this.waiterCount = new Set(table.waiters.map((w) => `${w.owner}\u0000${w.since}`)).size;
    this.waiters.value.textContent = String(this.waiterCount);
  }

  metrics(text) {
    this.metricsError = '';
    // No series yet (nothing waited since the server started) counts as all zeros.
    const buckets = waitBuckets(text) ?? [[Infinity, 0]];
    const now = Date.now();
    this.scrapes.push({ at: now, buckets });
    while (this.scrapes.length > 2 && this.scrapes[1].at <= now - WAIT_WINDOW_MS) this.scrapes.shift();
  }

  metricsFailed(message) {
    this.metricsError = message;
  }

  /** Closes the current sample (every SAMPLE_MS) and redraws. */
  sample() {
    const push = (name, v) => {
      this.series[name].push(v);
      if (this.series[name].length > POINTS) this.series[name].shift();
    };
    push('grants', this.counts.acquired / (SAMPLE_MS / 1000));
    push('lost', this.counts.lost);
    push('waiters', this.waiterCount);
    const [p50, p99] = this.#waitQuantiles();
    push('p50', p50);
    push('p99', p99);
    this.counts = { acquired: 0, lost: 0 };
    this.draw();
  }

  #waitQuantiles() {
    if (this.scrapes.length === 0) return [NaN, NaN];
    const last = this.scrapes.at(-1).buckets;
    const first = this.scrapes.length > 1 ? this.scrapes[0].buckets : [];
    const before = (le) => first.find(([l]) => l === le)?.[1] ?? 0;
    const delta = last.map(([le, count]) => [le, count - before(le)]);
    return [quantile(0.5, delta), quantile(0.99, delta)];
  }

  draw() {
    const s = this.series;
    const maxOf = (...lists) => Math.max(1e-9, ...lists.flat().filter(Number.isFinite));
    const drawOne = (c, lists, classes, text, foot) => {
      const max = maxOf(...lists);
      c.svg.replaceChildren(...lists.map((values, i) => line(values, max, classes[i])));
      c.value.textContent = text;
      if (foot !== undefined) c.foot.textContent = foot;
    };
    const grants = s.grants.at(-1) ?? 0;
    drawOne(this.grants, [s.grants], ['l1'], `${grants < 10 ? grants.toFixed(1) : Math.round(grants)}/s`, `acquired events, all processes · max ${fmt(maxOf(s.grants))}/s`);
    drawOne(this.waiters, [s.waiters], ['l1'], String(this.waiterCount), `queued requests · max ${maxOf(s.waiters) < 1 ? 0 : Math.round(maxOf(s.waiters))}`);
    const p50 = s.p50.at(-1);
    const p99 = s.p99.at(-1);
    const waitText = Number.isFinite(p50) ? `${seconds(p50)} / ${seconds(p99)}` : this.scrapes.length ? 'no waits' : '—';
    drawOne(this.wait, [s.p50, s.p99], ['l1', 'l2'], waitText, this.metricsError ? `metrics unavailable: ${this.metricsError}` : 'queued requests granted by this server, last 60 s');
    const lostTotal = s.lost.reduce((a, b) => a + b, 0);
    drawOne(this.lost, [s.lost], ['l3'], String(lostTotal), `expired or forced in the last ${Math.round((s.lost.length * SAMPLE_MS) / 60000) || 1} min`);
  }
}

const fmt = (v) => (v < 1e-6 ? '0' : v < 10 ? v.toFixed(1) : String(Math.round(v)));
