/** `holdfast events`: follows a server's event stream (`GET /v1/events`), one line per event. */
import { EXIT, UsageError, parseFlags, type CliCommand } from '../command.js';

export const eventsCommand: CliCommand = {
  name: 'events',
  summary: "follow a server's lock events as they happen",
  usage: `Usage: holdfast events [--server URL] [--json]

Prints acquired, released, expired, forced, waiting and timed-out events until interrupted.
Reconnects (resuming from the last event id) when the connection drops.
  --server URL    the holdfast server (env HOLDFAST_SERVER; default http://127.0.0.1:7070)
  --token T       bearer token (env HOLDFAST_TOKEN)
  --json          print each event's JSON

Example:
  holdfast events --server http://locks.internal:7070`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { server: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const server = (values.server ?? io.env['HOLDFAST_SERVER'] ?? 'http://127.0.0.1:7070').replace(/\/+$/, '');
    if (!/^https?:\/\//i.test(server)) throw new UsageError('--server: expected an http(s):// URL');
    const token = values.token ?? io.env['HOLDFAST_TOKEN'];
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let lastId: string | undefined;
    let failures = 0;
    try {
      while (!stop.signal.aborted) {
        try {
          const headers: Record<string, string> = { accept: 'text/event-stream' };
          if (token) headers['authorization'] = `Bearer ${token}`;
          if (lastId) headers['last-event-id'] = lastId;
          const response = await fetch(`${server}/v1/events`, { headers, signal: stop.signal });
          if (!response.ok || !response.body) {
            io.stderr.write(`holdfast: ${server}/v1/events answered ${response.status}\n`);
            return response.status === 401 || response.status === 403 ? EXIT.failure : EXIT.unavailable;
          }
          failures = 0;
          let buffer = '';
          const decoder = new TextDecoder();
          for await (const chunk of response.body) {
            buffer += decoder.decode(chunk as Uint8Array, { stream: true });
            let end: number;
            while ((end = buffer.indexOf('\n\n')) !== -1) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const event = parseFrame(frame);
              if (!event) continue;
              if (event.id) lastId = event.id;
              io.stdout.write(values.json ? `${event.data}\n` : `${render(event.event, event.data)}\n`);
            }
          }
        } catch (error) {
          if (stop.signal.aborted) break;
          if (++failures > 5) {
            io.stderr.write(`holdfast: lost the event stream: ${error instanceof Error ? error.message : String(error)}\n`);
            return EXIT.unavailable;
          }
        }
        if (!stop.signal.aborted) await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** failures)));
      }
      return EXIT.ok;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

function parseFrame(frame: string): { id?: string; event: string; data: string } | null {
  let id: string | undefined;
  let event = 'message';
  const data: string[] = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  return { ...(id === undefined ? {} : { id }), event, data: data.join('\n') };
}

function render(event: string, data: string): string {
  try {
    const change = JSON.parse(data) as { type?: string; keys?: string[]; owner?: string; fence?: number | null; at?: string | number };
    const at = typeof change.at === 'number' ? new Date(change.at).toISOString() : change.at ?? new Date().toISOString();
    const fence = change.fence === null || change.fence === undefined ? '' : ` fence ${change.fence}`;
    return `${at}  ${(change.type ?? event).padEnd(9)}  ${(change.keys ?? []).join(',')}  owner ${change.owner ?? '?'}${fence}`;
  } catch {
    return `${event} ${data}`;
  }
}
