import type { PinoLogger } from 'nestjs-pino';
import { traceHeaders } from './tracing/tracing';

/**
 * What a delivery job carries from the code that queued it: the request id (so the job's and
 * the delivery's log lines show it) and the W3C trace context (so the worker's spans join the
 * request's trace). Ids only, never a secret.
 */
export interface JobContext {
  requestId?: string;
  traceparent?: string;
  tracestate?: string;
}

let requestLogger: PinoLogger | undefined;

/** Where `currentJobContext` reads the request id from (set by `DeliveryObservability`). */
export function bindRequestLogger(logger: PinoLogger | undefined): void {
  requestLogger = logger;
}

/**
 * The context of the code running now (an HTTP request, or a job continuing one), for the
 * data of a job queued now; `undefined` when there is none. Called once per enqueue.
 */
export function currentJobContext(): JobContext | undefined {
  const reqId = requestLogger?.logger.bindings().reqId as unknown;
  const { traceparent, tracestate } = traceHeaders();
  if (typeof reqId !== 'string' && !traceparent) return undefined;
  return {
    ...(typeof reqId === 'string' ? { requestId: reqId } : {}),
    ...(traceparent ? { traceparent } : {}),
    ...(tracestate ? { tracestate } : {}),
  };
}
