import {
  createServer,
  IncomingHttpHeaders,
  Server,
  ServerResponse,
} from 'http';
import type { AddressInfo } from 'net';

/** One request a receiver got. */
export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** How the receiver answers the n-th request (0-based). */
export type Responder = (
  n: number,
  received: Received,
  res: ServerResponse,
) => void;

/** A real HTTP server on loopback that records what it receives. */
export interface Receiver {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/** Starts a receiver; by default it answers 200 "ok". */
export async function startReceiver(
  respond: Responder = (_n, _r, res) => res.end('ok'),
  path = '/hook',
): Promise<Receiver> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = {
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        at: Date.now(),
      };
      received.push(entry);
      respond(received.length - 1, entry, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
