import type { IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';

/** A response body read up to a byte cap. */
export interface CappedBody {
  /** UTF-8 text of at most `maxBytes` bytes (a character split by the cap is dropped). */
  body: string;
  /** True when the sender had more than `maxBytes` to give. */
  truncated: boolean;
}

/**
 * Reads a response body, keeping at most `maxBytes`. As soon as more arrives the response
 * (and so its socket) is destroyed: an endless body cannot hold the connection. Rejects
 * when the connection fails or closes before the body is complete.
 */
export function readCappedBody(
  res: IncomingMessage,
  maxBytes: number,
): Promise<CappedBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (truncated: boolean) => {
      if (settled) return;
      settled = true;
      const bytes = Buffer.concat(chunks);
      const body = truncated
        ? new StringDecoder('utf8').write(bytes)
        : bytes.toString('utf8');
      resolve({ body, truncated });
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    res.on('data', (chunk: Buffer) => {
      const room = maxBytes - size;
      chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
      size += Math.min(chunk.length, room);
      if (chunk.length > room) {
        done(true);
        res.destroy();
      }
    });
    res.on('end', () => done(false));
    res.on('error', fail);
    res.on('close', () => {
      if (res.complete) return;
      const err = new Error(
        'connection closed before the response was complete',
      );
      fail(Object.assign(err, { code: 'ECONNRESET' }));
    });
  });
}
