import { Inject, Injectable } from '@nestjs/common';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import type { Job } from 'bull';
import { PinoLogger } from 'nestjs-pino';
import { DELIVERY_QUEUE } from '../deliveries/delivery-queue';
import type { SendResult } from '../webhooks-http/send-result';
import type { WebhookRequest } from '../webhooks-http/webhook-sender';
import { bindRequestLogger, JobContext } from './job-context';
import { AppMetrics } from './metrics/app-metrics';
import { OBSERVABILITY_CONFIG } from './observability.constants';
import type { ObservabilityConfig } from './observability-config';
import { contextFrom, startServiceSpan, traceHeaders } from './tracing/tracing';

/** What a job answers when its 2xx outcome is still being recorded (in a batch). */
const RECORDING = 'recording';

/** Job outcomes logged at debug level only (a busy endpoint makes many). */
const QUIET_OUTCOMES = new Set(['deferred', 'skipped']);

/** The attempt's result class: `2xx`..`5xx`, or the error class. A bounded set, for labels. */
export function resultClass(result: SendResult): string {
  return result.kind === 'response'
    ? `${Math.floor(result.status / 100)}xx`
    : result.errorClass;
}

/**
 * Logs, metrics and spans of the delivery worker: each job runs with the request id and trace
 * context it carries (`JobContext`), and each webhook request is timed, counted, traced and
 * logged (never with its URL, headers or signatures).
 */
@Injectable()
export class DeliveryObservability {
  constructor(
    private readonly logger: PinoLogger,
    private readonly metrics: AppMetrics,
    @Inject(OBSERVABILITY_CONFIG)
    private readonly config: ObservabilityConfig,
  ) {
    this.logger.setContext('DeliveryWorker');
    bindRequestLogger(logger);
  }

  /**
   * Runs the handling of `job` in its request's logging context (`reqId`, `jobId`) and, while
   * tracing is on, in a consumer span that continues the trace the job carries; counts the
   * outcome in `webhook_deliveries_total`.
   */
  runJob<T extends string>(
    job: Job<{ context?: JobContext }>,
    handle: () => Promise<T>,
  ): Promise<T> {
    const carried = job.data.context;
    const parent = contextFrom(carried);
    const span = startServiceSpan(
      `${DELIVERY_QUEUE} process`,
      SpanKind.CONSUMER,
      parent,
    );
    const started = performance.now();
    const run = () =>
      handle().then(
        (outcome) => {
          // NOTE: a 2xx outcome recorded in a batch is counted when it lands (outcomeRecorded).
          if (outcome !== RECORDING) this.metrics.deliveries.inc({ outcome });
          const line = {
            outcome,
            durationMs: Math.round(performance.now() - started),
          };
          if (QUIET_OUTCOMES.has(outcome)) {
            this.logger.debug(line, 'delivery job done');
          } else this.logger.info(line, 'delivery job done');
          span?.setAttribute('delivery.outcome', outcome);
          span?.end();
          return outcome;
        },
        (error: unknown) => {
          this.metrics.deliveries.inc({ outcome: 'error' });
          span?.recordException(error as Error);
          span?.setStatus({ code: SpanStatusCode.ERROR });
          span?.end();
          throw error;
        },
      );
    const bindings = {
      ...(carried?.requestId ? { reqId: carried.requestId } : {}),
      jobId: String(job.id),
    };
    return this.logger.runInContext(
      () => (span ? context.with(trace.setSpan(parent, span), run) : run()),
      { bindings },
    );
  }

  /**
   * Counts (and logs) the outcome of a job that answered `recording`, once its batch has
   * recorded it. Called from the job's context, so the line carries its request id.
   */
  outcomeRecorded(outcome: string): void {
    this.metrics.deliveries.inc({ outcome });
    this.logger.info({ outcome }, 'delivery outcome recorded');
  }

  /**
   * Sends one webhook request through `send`: in a client span (with `traceparent` on the
   * request when `WEBHOOK_TRACEPARENT=on`), timed into `webhook_attempt_duration_seconds`,
   * logged with the delivery id, the attempt number and the result class.
   */
  async sendAttempt(
    attempt: { deliveryId: string; attemptNumber: number },
    request: WebhookRequest,
    send: (request: WebhookRequest) => Promise<SendResult>,
  ): Promise<SendResult> {
    const span = startServiceSpan('POST', SpanKind.CLIENT);
    if (span) {
      span.setAttributes({
        'http.request.method': 'POST',
        'server.address': hostOf(request.url),
        'delivery.attempt': attempt.attemptNumber,
      });
      if (this.config.webhookTraceparent) {
        Object.assign(
          request.headers,
          traceHeaders(trace.setSpan(context.active(), span)),
        );
      }
    }
    const result = await send(request);
    const label = resultClass(result);
    this.metrics.attemptDuration.observe(
      { result: label },
      result.durationMs / 1000,
    );
    if (span) {
      if (result.kind === 'response') {
        span.setAttribute('http.response.status_code', result.status);
      } else span.setAttribute('error.type', result.errorClass);
      if (result.kind === 'error' || result.status >= 400) {
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    }
    this.logger.info(
      {
        deliveryId: attempt.deliveryId,
        attempt: attempt.attemptNumber,
        result: label,
        status: result.kind === 'response' ? result.status : null,
        durationMs: Math.round(result.durationMs),
      },
      'webhook attempt sent',
    );
    return result;
  }
}

/** The host of a URL (never its path or query, which may hold a customer's token). */
function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return 'invalid';
  }
}
