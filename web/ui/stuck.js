// "Stuck?" hints: how long leases of a key usually last, learned from the history (acquired and
// ended events of the same fence), and whether a live lease is held far past that. Keys are also
// grouped by their shape with numbers blanked (`tenants/t2/backup` and `tenants/t10/backup` share
// `tenants/t#/backup`), so a key seen rarely borrows its siblings' durations.

const MIN_SAMPLES = 3;
const KEEP = 50;
/** Stuck when held longer than FACTOR × the median and at least SLACK_MS past it. */
const FACTOR = 4;
const SLACK_MS = 30_000;

export const shapeOf = (key) => key.replace(/\d+/g, '#');

export class UsualDurations {
  constructor() {
    this.byKey = new Map();
    this.byShape = new Map();
  }

  /** Learns from history events (any order). */
  learn(events) {
    const started = new Map();
    for (const e of events) if (e.type === 'acquired') started.set(e.fence, Date.parse(e.at));
    const byKey = new Map();
    const byShape = new Map();
    const add = (map, name, ms) => {
      const list = map.get(name) ?? [];
      if (list.length < KEEP) list.push(ms);
      map.set(name, list);
    };
    for (const e of events) {
      if (e.type === 'acquired' || !started.has(e.fence)) continue;
      const ms = Date.parse(e.at) - started.get(e.fence);
      if (!(ms >= 0)) continue;
      for (const r of e.resources) {
        add(byKey, r.key, ms);
        add(byShape, shapeOf(r.key), ms);
      }
    }
    this.byKey = byKey;
    this.byShape = byShape;
  }

  /** `{ medianMs, samples, of }` for a key, or null when too little is known. */
  usual(key) {
    for (const [map, name, of] of [[this.byKey, key, 'this key'], [this.byShape, shapeOf(key), `keys like ${shapeOf(key)}`]]) {
      const list = map.get(name);
      if (list && list.length >= MIN_SAMPLES) {
        const sorted = [...list].sort((a, b) => a - b);
        return { medianMs: sorted[Math.floor(sorted.length / 2)], samples: list.length, of };
      }
    }
    return null;
  }

  /** A hint when `heldMs` is far past the usual duration of `key`'s leases, else null. */
  stuck(key, heldMs) {
    const usual = this.usual(key);
    if (!usual || heldMs < usual.medianMs * FACTOR || heldMs < usual.medianMs + SLACK_MS) return null;
    return usual;
  }
}
