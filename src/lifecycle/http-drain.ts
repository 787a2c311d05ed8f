import type { Server, ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';

/** How long, with no request in flight, keep-alive connections stay open before they close. */
const IDLE_LINGER_MS = 200;

/**
 * Stops an HTTP server gracefully: no new connections, the requests in flight answered, every
 * answer from then on with `Connection: close`, and the idle keep-alive connections closed once
 * no request is in flight.
 */
export class HttpDrain {
  private readonly inFlight = new Set<ServerResponse>();
  private closed?: Promise<void>;
  private idleTimer?: NodeJS.Timeout;

  constructor(private readonly server: Server) {
    // NOTE: first, so that the header is set before the app's listener can answer.
    server.prependListener('request', (_req, res: ServerResponse) =>
      this.track(res),
    );
  }

  /** Requests received and not answered yet. */
  get requestsInFlight(): number {
    return this.inFlight.size;
  }

  /**
   * Closes the listening socket; resolves once every connection has closed. Idempotent.
   */
  stopAccepting(): Promise<void> {
    if (this.closed) return this.closed;
    if (!this.server.listening) return (this.closed = Promise.resolve());
    // NOTE: net.Server's close, not http.Server's: that one also destroys the idle keep-alive
    // connections at once, racing the request a client may be writing on one (it gets a
    // reset, and a POST is not retried). They are closed once the server has nothing to do.
    this.closed = new Promise((resolve) =>
      NetServer.prototype.close.call(this.server, () => resolve()),
    );
    for (const res of this.inFlight) this.closeAfter(res);
    this.closeIdleLater();
    return this.closed;
  }

  /** Drops the connections still open (the requests on them get no answer). */
  forceClose(): void {
    clearTimeout(this.idleTimer);
    this.server.closeAllConnections();
  }

  private track(res: ServerResponse) {
    this.inFlight.add(res);
    if (this.closed) {
      // Came on a connection opened before the stop: answered, then the connection closes.
      clearTimeout(this.idleTimer);
      this.closeAfter(res);
    }
    const done = () => {
      if (this.inFlight.delete(res) && this.closed) this.closeIdleLater();
    };
    res.once('finish', done);
    res.once('close', done);
  }

  private closeAfter(res: ServerResponse) {
    // NOTE: an answer whose headers went before the stop keeps its connection alive; it is
    // closed with the idle ones.
    if (!res.headersSent) res.setHeader('connection', 'close');
  }

  private closeIdleLater() {
    clearTimeout(this.idleTimer);
    if (this.inFlight.size > 0) return;
    this.idleTimer = setTimeout(
      () => this.server.closeIdleConnections(),
      IDLE_LINGER_MS,
    );
    // The connections, not this timer, keep the process alive while they are open.
    this.idleTimer.unref();
  }
}
