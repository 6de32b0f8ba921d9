/**
 * A TCP proxy in front of one etcd member's peer port, so a test can cut a member off from the
 * others (a network partition) without network namespaces. Every member advertises its proxy's
 * port to the others; the proxy forwards to the member's real peer port. Raft requests carry the
 * sender's member id in the `X-Server-From` header, which the proxy reads from the first request
 * of each connection, so it can tell who is calling:
 *
 *   cut(member)  the proxy of `member` drops and refuses every connection into it, and every other
 *                proxy drops and refuses connections whose sender is `member`: no raft message
 *                crosses between the member and the rest, either way. Clients still reach it.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** Headers are read up to this many bytes; a connection without them in that much is passed as is. */
const HEADER_LIMIT = 16 * 1024;

interface Connection {
  client: Socket;
  upstream: Socket | null;
  /** The sender's member id (hex), when the first request named one. */
  sender: string | null;
}

export class PeerProxy {
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  port = 0;

  /** `refuse(sender)`: whether a connection from `sender` (hex id, or null) must be dropped now. */
  private constructor(readonly targetPort: number, readonly refuse: (sender: string | null) => boolean) {
    this.#server = createServer((client) => this.#accept(client));
    this.#server.unref();
  }

  static async start(listenPort: number, targetPort: number, refuse: (sender: string | null) => boolean): Promise<PeerProxy> {
    const proxy = new PeerProxy(targetPort, refuse);
    await new Promise<void>((resolve, reject) => proxy.#server.once('error', reject).listen(listenPort, '127.0.0.1', resolve));
    proxy.port = listenPort;
    return proxy;
  }

  #accept(client: Socket): void {
    const connection: Connection = { client, upstream: null, sender: null };
    this.#connections.add(connection);
    const end = (): void => {
      this.#connections.delete(connection);
      client.destroy();
      connection.upstream?.destroy();
    };
    client.on('error', end).on('close', end);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const headerEnd = head.indexOf('\r\n\r\n');
      if (headerEnd === -1 && head.length < HEADER_LIMIT) return;
      client.off('data', onData);
      client.pause();
      const match = /\r\nx-server-from:\s*([0-9a-f]+)/i.exec(head.subarray(0, headerEnd === -1 ? head.length : headerEnd).toString('latin1'));
      connection.sender = match?.[1]?.toLowerCase() ?? null;
      if (this.refuse(connection.sender)) return end();
      const upstream = connect(this.targetPort, '127.0.0.1');
      connection.upstream = upstream;
      upstream.on('error', end).on('close', end);
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
      client.resume();
    };
    client.on('data', onData);
    if (this.refuse(null)) end();
  }

  /** Drops the connections open now whose sender `refuse` says to drop. */
  enforce(): void {
    for (const c of [...this.#connections]) {
      if (this.refuse(c.sender)) {
        c.client.destroy();
        c.upstream?.destroy();
        this.#connections.delete(c);
      }
    }
  }

  async close(): Promise<void> {
    for (const c of this.#connections) {
      c.client.destroy();
      c.upstream?.destroy();
    }
    this.#connections.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
