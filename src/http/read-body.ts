import {
  BadRequestException,
  HttpException,
  HttpStatus,
  PayloadTooLargeException,
} from '@nestjs/common';
import type { IncomingMessage } from 'node:http';

/** Whether the request announces a body (a length above 0, or chunked transfer). */
export function hasBody(req: IncomingMessage): boolean {
  return (
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? 0) > 0
  );
}

function tooLarge(limit: number) {
  return new PayloadTooLargeException(
    `Request body exceeds the limit of ${Math.floor(limit / 1024)}kb`,
  );
}

/**
 * Reads a request body of at most `limit` bytes. A Content-Length above the limit is refused
 * before a byte is read; a body that grows past it is refused as soon as it does. Compressed
 * bodies are refused (415): the limit is on what is parsed.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const encoding = (req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  if (encoding !== 'identity') {
    return Promise.reject(
      new HttpException(
        {
          statusCode: HttpStatus.UNSUPPORTED_MEDIA_TYPE,
          error: 'Unsupported Media Type',
          message: `Content-Encoding "${encoding.slice(0, 40)}" is not supported; send the body uncompressed`,
        },
        HttpStatus.UNSUPPORTED_MEDIA_TYPE,
      ),
    );
  }
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const fail = (error: Error) => {
      cleanup();
      // NOTE: the rest of the body is left unread; Node discards it after the response.
      req.pause();
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(tooLarge(limit));
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = () =>
      fail(new BadRequestException('The request body could not be read'));
    const onAborted = () =>
      fail(new BadRequestException('The request body was cut short'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
