import {
  Context,
  ROOT_CONTEXT,
  Span,
  SpanKind,
  Tracer,
  context,
  propagation,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  SpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { ObservabilityConfig } from '../observability-config';

/** Name of the tracer of the service's own spans (HTTP, jobs, webhook requests). */
const TRACER_NAME = 'transactional-webhooks';

let provider: TracerProvider | undefined;
let tracer: Tracer | undefined;

/**
 * Starts the OpenTelemetry SDK for the process: an AsyncLocalStorage context manager, the W3C
 * trace-context propagator, and a tracer provider that exports over OTLP/HTTP when an endpoint
 * is configured, plus `extraProcessors` (tests pass an in-memory exporter). Does nothing, and
 * tracing stays off (no span is made anywhere), when there is nowhere to send spans. Call it
 * once, before the application is created.
 */
export function startTracing(
  config: Pick<ObservabilityConfig, 'otlpEndpoint' | 'serviceName'>,
  extraProcessors: SpanProcessor[] = [],
): boolean {
  if (provider) throw new Error('tracing is already started');
  const spanProcessors = [...extraProcessors];
  if (config.otlpEndpoint) {
    // NOTE: the exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
    spanProcessors.push(
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter() }),
    );
  }
  if (spanProcessors.length === 0) return false;
  provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.serviceName }),
    spanProcessors,
  });
  context.setGlobalContextManager(
    new AsyncLocalStorageContextManager().enable(),
  );
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  tracer = provider.getTracer(TRACER_NAME);
  return true;
}

/** Flushes and stops the SDK started by `startTracing` (if any); tracing is off afterwards. */
export async function stopTracing(): Promise<void> {
  const stopping = provider;
  if (!stopping) return;
  provider = undefined;
  tracer = undefined;
  await stopping.shutdown();
  trace.disable();
  propagation.disable();
  context.disable();
}

/** The service's tracer, or `undefined` while tracing is off. */
export function serviceTracer(): Tracer | undefined {
  return tracer;
}

/** Starts a span of `kind` under `parent` (the active context by default). */
export function startServiceSpan(
  name: string,
  kind: SpanKind,
  parent: Context = context.active(),
): Span | undefined {
  return tracer?.startSpan(name, { kind }, parent);
}

/** The W3C trace-context headers of the active span (empty while tracing is off). */
export function traceHeaders(ctx: Context = context.active()): {
  traceparent?: string;
  tracestate?: string;
} {
  const carrier: { traceparent?: string; tracestate?: string } = {};
  if (tracer) propagation.inject(ctx, carrier);
  return carrier;
}

/** The context a `traceparent` (and `tracestate`) continue, or the root context. */
export function contextFrom(
  carrier: { traceparent?: unknown } | object | undefined,
): Context {
  const headers = carrier as { traceparent?: unknown } | undefined;
  if (!tracer || typeof headers?.traceparent !== 'string') return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, headers);
}
