import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import type { AddressInfo } from 'net';

/** One webhook request the sink got. */
export interface SinkRequest {
  webhookId: string;
  at: number;
}

/** How the sink answers a request: `'ok'` (200 now), `'hold'` (never) or a delay in ms. */
export type SinkMode = 'ok' | 'hold' | number;

/**
 * The receiving end of every fault spec: a loopback HTTP server that records the `webhook-id`
 * of every request and counts repeats of the same id (at-least-once allows them).
 */
export class Sink {
  readonly requests: SinkRequest[] = [];
  /** Requests per webhook-id. */
  readonly counts = new Map<string, number>();
  /** How new requests are answered; change it at any time. */
  mode: SinkMode = 'ok';
  /** Requests held open (mode `'hold'`), answered by `releaseHeld()` or dropped with the sender. */
  readonly held: { webhookId: string; res: ServerResponse }[] = [];
  private readonly listeners: ((r: SinkRequest) => void)[] = [];
  private readonly server: Server = createServer((req, res) =>
    this.handle(req, res),
  );

  private constructor() {
    // NOTE: as a receiver in production would (Node's default is 5 s). At 1 s, which this
    // sink had until 2026-12-04, Node's agent in the worker reuses no connection (it keeps a
    // socket for the server's `Keep-Alive: timeout` less 1 s): each delivery opened a TCP
    // connection, and at hundreds per second the sockets in TIME_WAIT filled the ephemeral port
    // range, which made every connect slower (the overload spec's rates swung by 2x within a
    // run). Closing the sink closes its connections (`close`).
    this.server.keepAliveTimeout = 30_000;
  }

  static async start(): Promise<Sink> {
    const sink = new Sink();
    await new Promise<void>((done) => sink.server.listen(0, '127.0.0.1', done));
    return sink;
  }

  /** The URL endpoints are registered with. */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  /** Requests received (repeats included). */
  get total(): number {
    return this.requests.length;
  }

  /** Distinct webhook-ids received. */
  get unique(): number {
    return this.counts.size;
  }

  /** Requests beyond the first of their webhook-id. */
  get duplicates(): number {
    return this.total - this.unique;
  }

  /** Calls `fn` on every request from now on. */
  onRequest(fn: (r: SinkRequest) => void) {
    this.listeners.push(fn);
  }

  /** Answers the held requests whose sender is still connected. */
  releaseHeld() {
    for (const { res } of this.held.splice(0)) {
      if (!res.destroyed) res.end('ok');
    }
  }

  async close() {
    this.releaseHeld();
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }

  private handle(req: IncomingMessage, res: ServerResponse) {
    req.resume();
    req.on('end', () => {
      const webhookId = String(req.headers['webhook-id'] ?? '');
      const entry = { webhookId, at: Date.now() };
      this.requests.push(entry);
      this.counts.set(webhookId, (this.counts.get(webhookId) ?? 0) + 1);
      const mode = this.mode;
      if (mode === 'hold') this.held.push({ webhookId, res });
      else if (mode === 'ok') res.end('ok');
      else setTimeout(() => res.end('ok'), mode);
      for (const fn of this.listeners) fn(entry);
    });
  }
}
