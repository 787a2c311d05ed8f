import type { DestinationStream, Level } from 'pino';
import { ConfigValidationError } from '../config/app-config';
import { envSchema } from '../config/env.schema';

/** Logging, metrics and tracing settings (read from the environment, see the README). */
export interface ObservabilityConfig {
  /** `LOG_LEVEL`: the lowest level written (default `info`), or `silent`. */
  logLevel: Level | 'silent';
  /**
   * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: traces are recorded
   * and exported over OTLP/HTTP when either is set; otherwise tracing is off (no span is made).
   */
  otlpEndpoint?: string;
  /** `OTEL_SERVICE_NAME`: the `service.name` of the spans (default `transactional-webhooks`). */
  serviceName: string;
  /**
   * `WEBHOOK_TRACEPARENT=on`: outgoing webhooks carry a W3C `traceparent` header, so a receiver
   * that traces joins the delivery's trace. Off by default: receivers are third parties.
   */
  webhookTraceparent: boolean;
  /** Where JSON log lines go (default stdout). Not from the environment: for tests. */
  logDestination?: DestinationStream;
}

/** The schema's fields of the observability variables (checked with all the others at start). */
const observabilitySchema = envSchema.pick({
  LOG_LEVEL: true,
  OTEL_EXPORTER_OTLP_ENDPOINT: true,
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: true,
  OTEL_SERVICE_NAME: true,
  WEBHOOK_TRACEPARENT: true,
});

/**
 * Reads the observability settings through the service's schema (`config/env.schema.ts`), before
 * the logger exists; throws a `ConfigValidationError` naming every bad variable at once.
 */
export function loadObservabilityConfig(
  env: NodeJS.ProcessEnv = process.env,
): ObservabilityConfig {
  const result = observabilitySchema.safeParse(env);
  if (!result.success) {
    throw new ConfigValidationError(
      result.error.issues.map(
        (issue) => `${issue.path.join('.')}: ${issue.message}`,
      ),
    );
  }
  const parsed = result.data;
  return {
    logLevel: parsed.LOG_LEVEL,
    otlpEndpoint:
      parsed.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
      parsed.OTEL_EXPORTER_OTLP_ENDPOINT,
    serviceName: parsed.OTEL_SERVICE_NAME || 'transactional-webhooks',
    webhookTraceparent: parsed.WEBHOOK_TRACEPARENT === 'on',
  };
}
