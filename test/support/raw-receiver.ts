import { createServer, Server, Socket } from 'net';
import type { AddressInfo } from 'net';

/** How a raw receiver answers the n-th request (0-based): it writes whatever bytes it likes. */
export type RawResponder = (n: number, socket: Socket) => void;

/** A TCP server on loopback that reads HTTP requests and answers with raw bytes. */
export interface RawReceiver {
  url: string;
  /** Arrival times of the requests, one per request. */
  received: number[];
  close(): Promise<void>;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Starts a receiver that answers below the HTTP library: status lines, headers and bodies
 * Node's own server refuses to write (NUL bytes, invalid UTF-8, oversized headers, trickles).
 */
export async function startRawReceiver(
  respond: RawResponder,
): Promise<RawReceiver> {
  const received: number[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf(HEAD_END);
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.subarray(end + 4 + length);
        received.push(Date.now());
        respond(received.length - 1, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A complete HTTP/1.1 response with a Content-Length, headers and body as raw bytes. */
export function rawResponse(
  status: number,
  body: Buffer,
  headers: Buffer = Buffer.alloc(0),
): Buffer {
  return Buffer.concat([
    Buffer.from(
      `HTTP/1.1 ${status} X\r\ncontent-length: ${body.length}\r\n`,
      'latin1',
    ),
    headers,
    Buffer.from('\r\n', 'latin1'),
    body,
  ]);
}
