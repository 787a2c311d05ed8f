import { BadRequestException } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';

/**
 * Refuses (400) a request that repeats a header whose meaning is one value. Node keeps the
 * first of some repeated headers (Authorization, Content-Type) and joins others with ", "
 * (Idempotency-Key): either way a second value would be silently ignored or mangled.
 */
export function assertSingleHeader(req: IncomingMessage, name: string): void {
  const lower = name.toLowerCase();
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i].toLowerCase() === lower) count++;
  }
  if (count > 1) {
    throw new BadRequestException(
      `Send one ${name} header; this request has ${count}`,
    );
  }
}
