import type * as OtelApi from '@opentelemetry/api';

import { TRACER_NAME } from './tracer-name';

/** The parts of an OpenTelemetry span the library uses. Internal. */
export type LibrarySpan = Pick<
  OtelApi.Span,
  'setAttribute' | 'setStatus' | 'recordException' | 'end'
>;

type Api = typeof OtelApi;

let api: Api | null | undefined;
let tracer: OtelApi.Tracer | undefined;
/** What the API's global tracer provider delegates to while no SDK has registered one. */
let noopProvider: OtelApi.TracerProvider | undefined;

/**
 * `@opentelemetry/api` when the application has it installed (an optional peer dependency),
 * else `null`. Loaded once. Without an SDK registered by the application, the API's own no-op
 * tracer answers: spans cost one small object and are never recorded.
 */
export function otelApi(): Api | null {
  if (api === undefined) {
    try {
      // NOTE: a require, not an import: the package is an optional peer and may be absent.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      api = require('@opentelemetry/api') as Api;
      tracer = api.trace.getTracer(TRACER_NAME);
      // NOTE: the API's own no-op provider, reached through a proxy that has no delegate.
      noopProvider =
        typeof api.ProxyTracerProvider === 'function'
          ? new api.ProxyTracerProvider().getDelegate()
          : undefined;
    } catch {
      api = null;
    }
  }
  return api;
}

/**
 * Whether a span started now could record: the API is installed and an SDK has registered a
 * tracer provider (checked on every call: an SDK may register after the library has loaded).
 * Callers test it before building a span's name and attributes, which are otherwise built per
 * transaction and per batch for a no-op tracer.
 */
export function tracingOn(): boolean {
  const otel = otelApi();
  if (!otel) return false;
  if (!noopProvider) return true;
  const provider = otel.trace.getTracerProvider();
  return !(
    provider instanceof otel.ProxyTracerProvider &&
    provider.getDelegate() === noopProvider
  );
}

/**
 * Starts a span that is a child of the active context's span; `undefined` without the API, or
 * when the span would record nothing.
 */
export function startSpan(
  name: string,
  kind: 'internal' | 'producer',
  attributes: OtelApi.Attributes,
): LibrarySpan | undefined {
  const otel = otelApi();
  if (!otel) return undefined;
  const span = tracer!.startSpan(name, {
    kind: kind === 'producer' ? otel.SpanKind.PRODUCER : otel.SpanKind.INTERNAL,
    attributes,
  });
  // NOTE: without an SDK (or when sampled out) the span records nothing: dropping it here
  // spares the scope a context switch, and its children attach to the span around it.
  return span.isRecording() ? span : undefined;
}

/** Runs `fn` with `span` as the active span (so spans started inside are its children). */
export function withSpan<T>(span: LibrarySpan | undefined, fn: () => T): T {
  const otel = otelApi();
  if (!otel || !span) return fn();
  return otel.context.with(
    otel.trace.setSpan(otel.context.active(), span as OtelApi.Span),
    fn,
  );
}

/** Ends `span` with `outcome` as its `attribute`; an error marks it failed. */
export function endSpan(
  span: LibrarySpan | undefined,
  attribute: string,
  outcome: string,
  error?: unknown,
): void {
  if (!span) return;
  span.setAttribute(attribute, outcome);
  if (error !== undefined) {
    if (error instanceof Error) span.recordException(error);
    span.setStatus({
      code: otelApi()!.SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  }
  span.end();
}
