// Small formatting helpers shared by the dashboard's modules.

/** "850 ms", "12 s", "4 min 10 s", "3 h 5 min", "2 d 4 h". */
export function span(ms) {
  if (!Number.isFinite(ms)) return '—';
  const abs = Math.max(0, ms);
  if (abs < 1000) return `${Math.round(abs)} ms`;
  const s = Math.floor(abs / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  if (s < 86400) return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
  return `${Math.floor(s / 86400)} d${Math.floor((s % 86400) / 3600) ? ` ${Math.floor((s % 86400) / 3600)} h` : ''}`;
}

/** Seconds-level duration for charts' axes: "0.4 s", "12 ms". */
export function seconds(value) {
  if (!Number.isFinite(value)) return '—';
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} s`;
}

export const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });
export const dateTime = (iso) => new Date(iso).toLocaleString([], { hour12: false });

export const messageOf = (metadata) => (metadata && typeof metadata.message === 'string' ? metadata.message : '');

/** An element with a class and text (text is always set as text, never as HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** Natural order of key segments: `t2` before `t10`. */
export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

/** Appends children to `node` and returns it. */
export function put(node, ...children) {
  node.append(...children);
  return node;
}
