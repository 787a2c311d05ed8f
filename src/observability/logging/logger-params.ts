import { trace } from '@opentelemetry/api';
import { randomUUID } from 'crypto';
import type { IncomingMessage, ServerResponse } from 'http';
import type { Params } from 'nestjs-pino';
import type { Options } from 'pino-http';
import type { ObservabilityConfig } from '../observability-config';
import { serviceTracer } from '../tracing/tracing';

/** Request header (and response header) of the request id. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** A request id a caller may choose: short, and nothing that could forge a log line. */
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Paths pino replaces with `[redacted]` in any object it logs: credentials in headers, and
 * any field named like a secret. Secrets inside message strings cannot be caught this way:
 * the code never writes one there (a test greps the logs of a full run for every secret).
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["webhook-signature"]',
  '*.authorization',
  '*.apiKey',
  '*.adminToken',
  '*.secret',
  '*.secrets',
  '*.signature',
  '*["webhook-signature"]',
];

/** The request id of `req`: its valid `X-Request-Id`, or a new UUID; echoed in the response. */
export function requestIdOf(req: IncomingMessage, res: ServerResponse): string {
  const incoming = req.headers[REQUEST_ID_HEADER];
  const id =
    typeof incoming === 'string' && VALID_REQUEST_ID.test(incoming)
      ? incoming
      : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

/**
 * nestjs-pino settings: JSON lines with `reqId` on every line of a request (and of the jobs it
 * queued, see `DeliveryObservability`), the trace and span ids while tracing is on, one
 * "request completed" line per request with method, URL, status and time, and no header
 * values at all.
 */
export function loggerParams(config: ObservabilityConfig): Params {
  const options: Options = {
    level: config.logLevel,
    genReqId: requestIdOf,
    customAttributeKeys: { reqId: 'reqId' },
    // NOTE: lines written during a request carry only its id; the request itself is
    // described once, on the "request completed" line.
    quietReqLogger: true,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    serializers: {
      req: (req: { id: string; method: string; url: string }) => ({
        id: req.id,
        method: req.method,
        url: req.url,
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    customLogLevel: (_req, res, error) =>
      error || res.statusCode >= 500 ? 'error' : 'info',
    mixin() {
      if (!serviceTracer()) return {};
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  };
  // NOTE: process.stdout rather than pino's own fd writer, so that whatever wraps the process's
  // output (a test capturing it) sees the log lines.
  return { pinoHttp: [options, config.logDestination ?? process.stdout] };
}
