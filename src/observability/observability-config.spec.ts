import { ConfigValidationError } from '../config/app-config';
import { loadObservabilityConfig } from './observability-config';

describe('loadObservabilityConfig', () => {
  it('should default to info logs, no tracing and no traceparent', () => {
    expect(loadObservabilityConfig({})).toEqual({
      logLevel: 'info',
      otlpEndpoint: undefined,
      serviceName: 'transactional-webhooks',
      webhookTraceparent: false,
    });
  });

  it('should prefer the traces endpoint over the general OTLP endpoint', () => {
    const config = loadObservabilityConfig({
      LOG_LEVEL: 'silent',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/v1/traces',
      OTEL_SERVICE_NAME: 'webhooks-eu',
      WEBHOOK_TRACEPARENT: 'on',
    });
    expect(config).toEqual({
      logLevel: 'silent',
      otlpEndpoint: 'https://traces.example/v1/traces',
      serviceName: 'webhooks-eu',
      webhookTraceparent: true,
    });
  });

  it('should name every bad variable at once, with the schema messages', () => {
    let error: unknown;
    try {
      loadObservabilityConfig({
        LOG_LEVEL: 'loud',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://user:secret@collector',
        WEBHOOK_TRACEPARENT: 'yes',
      });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ConfigValidationError);
    expect((error as ConfigValidationError).problems.sort()).toEqual([
      'LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'OTEL_EXPORTER_OTLP_ENDPOINT: must be an http(s) URL',
      'WEBHOOK_TRACEPARENT: must be one of on, off, got "yes"',
    ]);
    expect((error as Error).message).not.toContain('secret');
  });
});
