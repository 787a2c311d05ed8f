import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import { Webhook } from 'standardwebhooks';

/**
 * The bench's webhook receiver: answers 200 at once and verifies every request's signature
 * with the `standardwebhooks` package. Endpoint `i` is registered as `/hook/<i>`; its secret is
 * set with `secretFor(i, secret)` once the API returned it.
 */
export class VerifyingReceiver {
  /** Arrival time (ms, `performance.timeOrigin` based) of the first request per webhook-id + endpoint. */
  readonly arrivals = new Map<string, number>();
  /** Every verified request's arrival time, in order. */
  readonly times: number[] = [];
  received = 0;
  verified = 0;
  failed = 0;
  duplicates = 0;
  private readonly hooks = new Map<string, Webhook>();
  private readonly server: Server = createServer((req, res) =>
    this.handle(req, res),
  );

  static async start(): Promise<VerifyingReceiver> {
    const r = new VerifyingReceiver();
    r.server.keepAliveTimeout = 30_000;
    await new Promise<void>((done) => r.server.listen(0, '127.0.0.1', done));
    return r;
  }

  url(endpoint: string): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/hook/${endpoint}`;
  }

  secretFor(endpoint: string, secret: string) {
    this.hooks.set(endpoint, new Webhook(secret));
  }

  /** Forgets what was received (between phases). */
  reset() {
    this.arrivals.clear();
    this.times.length = 0;
    this.received = this.verified = this.failed = this.duplicates = 0;
  }

  async close() {
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }

  private handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = Date.now();
      this.received++;
      const endpoint = (req.url ?? '').split('/').pop() ?? '';
      const hook = this.hooks.get(endpoint);
      const id = String(req.headers['webhook-id']);
      try {
        if (!hook) throw new Error(`no secret for endpoint ${endpoint}`);
        hook.verify(
          Buffer.concat(chunks),
          req.headers as Record<string, string>,
        );
      } catch {
        this.failed++;
        res.statusCode = 400;
        res.end();
        return;
      }
      this.verified++;
      const key = `${id}/${endpoint}`;
      if (this.arrivals.has(key)) this.duplicates++;
      else this.arrivals.set(key, now);
      this.times.push(now);
      res.end('ok');
    });
  }
}
