// Follows /v1/events with fetch (not EventSource, so the token goes in a header), resuming with
// Last-Event-ID after a break. The server answers a resume it cannot serve (another boot, too old)
// with a `reset` event: the caller reloads everything then.

import { authHeaders } from './api.js';

const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];

export class EventStream {
  /**
   * @param {{ onEvent(event): void, onUp(): void, onRefused(message: string): void, onDown(info: { since: number, attempt: number, retryInMs: number, reason: string }): void }} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.lastEventId = '';
    this.controller = null;
    this.timer = null;
    this.attempt = 0;
    this.downSince = 0;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    if (!this.controller && this.timer === null) void this.#connect();
  }

  /** Ends the stream (a new token: reconnect with `start()`). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    this.controller?.abort();
    this.controller = null;
  }

  /** Connects again now (after a token change), keeping the last event id. */
  restart() {
    this.stop();
    this.start();
  }

  async #connect() {
    const controller = new AbortController();
    this.controller = controller;
    let reason = 'the stream ended';
    try {
      const extra = this.lastEventId ? { 'last-event-id': this.lastEventId } : {};
      const res = await fetch('/v1/events', { headers: { accept: 'text/event-stream', ...authHeaders(), ...extra }, signal: controller.signal, cache: 'no-store' });
      if (!res.ok || !res.body) {
        const body = await res.json().catch(() => null);
        const message = body?.error?.message ?? `HTTP ${res.status}`;
        if (res.status === 401) {
          // Retrying cannot help: the caller asks for another token and starts again.
          this.controller = null;
          this.stopped = true;
          this.handlers.onRefused(message);
          return;
        }
        throw new Error(message);
      }
      this.attempt = 0;
      this.downSince = 0;
      this.handlers.onUp();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          this.#frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      reason = error instanceof TypeError ? 'the server cannot be reached' : String(error.message || error);
    }
    if (this.controller !== controller || this.stopped) return;
    this.controller = null;
    if (!this.downSince) this.downSince = Date.now();
    const retryInMs = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.handlers.onDown({ since: this.downSince, attempt: this.attempt, retryInMs, reason });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) void this.#connect();
    }, retryInMs);
  }

  #frame(frame) {
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('id:')) this.lastEventId = line.slice(3).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (!data) return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    this.handlers.onEvent(event);
  }
}
