import type { DestinationStream, Level } from 'pino';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

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

function url(raw: string | undefined, name: string): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  try {
    const parsed = new URL(raw);
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return raw;
  } catch {
    // reported below
  }
  throw new Error(`${name} must be an http(s) URL, got "${raw}"`);
}

/** Reads the observability settings; throws naming every bad variable at once. */
export function loadObservabilityConfig(
  env: NodeJS.ProcessEnv = process.env,
): ObservabilityConfig {
  const errors: string[] = [];
  const attempt = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch (error) {
      errors.push((error as Error).message);
      return undefined;
    }
  };
  const level = env.LOG_LEVEL || 'info';
  if (level !== 'silent' && !(LEVELS as readonly string[]).includes(level)) {
    errors.push(
      `LOG_LEVEL must be one of ${LEVELS.join(', ')} or silent, got "${level}"`,
    );
  }
  const traceparent = env.WEBHOOK_TRACEPARENT ?? 'off';
  if (traceparent !== 'on' && traceparent !== 'off') {
    errors.push(`WEBHOOK_TRACEPARENT must be on or off, got "${traceparent}"`);
  }
  const config: ObservabilityConfig = {
    logLevel: level as Level | 'silent',
    otlpEndpoint:
      attempt(() =>
        url(
          env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
          'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
        ),
      ) ??
      attempt(() =>
        url(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'OTEL_EXPORTER_OTLP_ENDPOINT'),
      ),
    serviceName: env.OTEL_SERVICE_NAME || 'transactional-webhooks',
    webhookTraceparent: traceparent === 'on',
  };
  if (errors.length > 0) {
    throw new Error(`Invalid configuration:\n  ${errors.join('\n  ')}`);
  }
  return config;
}
