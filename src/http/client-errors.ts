import { maxHeaderSize, type Server } from 'node:http';
import type { Duplex } from 'node:stream';

function answer(status: number, error: string, message: string): string {
  const body = JSON.stringify({ statusCode: status, error, message });
  return (
    `HTTP/1.1 ${status} ${error}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

/**
 * Requests Node's HTTP parser refuses before the app sees them (oversized headers, malformed
 * request lines, header timeouts) get a JSON error like every other one, instead of Node's
 * empty-bodied default.
 */
export function answerClientErrorsAsJson(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // NOTE: as Node's default: nothing to answer on a reset socket or once a response began.
    if (
      err.code === 'ECONNRESET' ||
      !socket.writable ||
      (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
        ?.headersSent
    ) {
      socket.destroy();
      return;
    }
    const reply =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? answer(
            431,
            'Request Header Fields Too Large',
            `Request headers exceed ${Math.floor(maxHeaderSize / 1024)} KiB in total; send fewer or shorter headers`,
          )
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? answer(
              408,
              'Request Timeout',
              'The request headers did not arrive in time',
            )
          : answer(400, 'Bad Request', 'Malformed HTTP request');
    socket.end(reply);
  });
}
