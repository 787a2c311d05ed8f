import {
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace';
import { SpanKind } from '@opentelemetry/api';
import {
  startTracing,
  stopTracing,
} from '../src/observability/tracing/tracing';
import { ObservabilityConfig } from '../src/observability/observability-config';
import { OBSERVABILITY_CONFIG } from '../src/observability/observability.constants';
import { runDelayFlow } from './support/delay-flow';
import { E2eApp, SILENT, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** A traceparent as a caller of the API (a tracing gateway) would send it. */
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

describe('when tracing is on (in-memory exporter)', () => {
  const exporter = new InMemorySpanExporter();
  const observability: ObservabilityConfig = {
    ...SILENT,
    webhookTraceparent: true,
  };
  let svc: E2eApp;
  let receiver: Receiver;

  beforeAll(async () => {
    startTracing(observability, [new SimpleSpanProcessor({ exporter })]);
    svc = await startE2eApp({}, observability);
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
    await stopTracing();
  });

  const inTrace = (traceId: string) =>
    exporter
      .getFinishedSpans()
      .filter((s) => s.spanContext().traceId === traceId);
  const one = (spans: ReadableSpan[], name: string) => {
    const found = spans.filter((s) => s.name === name);
    expect(found.map((s) => s.name)).toEqual([name]);
    return found[0];
  };
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

  it("should make one trace from POST /v1/trips/:id/delays to the receiver's request", async () => {
    const flow = await runDelayFlow(svc, receiver, 'trace-flow-1', {
      traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
    });
    const spans = await eventually(() => {
      const all = inTrace(CALLER_TRACE);
      return all.some((s) => s.name === 'POST') && all;
    }, 'the webhook request span');
    const server = one(spans, 'POST /v1/trips/:id/delays');
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(parentOf(server)).toBe(CALLER_SPAN);
    expect(server.attributes['http.response.status_code']).toBe(201);
    const transaction = spans.find(
      (s) =>
        s.name === 'transaction' && parentOf(s) === server.spanContext().spanId,
    )!;
    expect(transaction.attributes['transaction.outcome']).toBe('commit');
    const enqueue = one(spans, 'webhook-deliveries enqueue');
    expect(enqueue.kind).toBe(SpanKind.PRODUCER);
    expect(parentOf(enqueue)).toBe(transaction.spanContext().spanId);
    expect(enqueue.attributes['messaging.outcome']).toBe('enqueued');
    const job = one(spans, 'webhook-deliveries process');
    expect(job.kind).toBe(SpanKind.CONSUMER);
    // NOTE: a 2xx outcome is recorded in a batch: the job may end before it lands.
    expect(['succeeded', 'recording']).toContain(
      job.attributes['delivery.outcome'],
    );
    const webhook = one(spans, 'POST');
    expect(webhook.kind).toBe(SpanKind.CLIENT);
    expect(parentOf(webhook)).toBe(job.spanContext().spanId);
    expect(webhook.attributes['http.response.status_code']).toBe(200);
    expect(webhook.attributes['server.address']).toBe('127.0.0.1');
    // The receiver's request is the last link: its traceparent names the webhook span.
    expect(flow.received.headers.traceparent).toBe(
      `00-${CALLER_TRACE}-${webhook.spanContext().spanId}-01`,
    );
    // Nothing of the URL but the host: a customer's URL may hold a token.
    expect(JSON.stringify(webhook.attributes)).not.toContain('/hook');
  });

  it('should start a trace of its own for a request without traceparent', async () => {
    exporter.reset();
    const flow = await runDelayFlow(svc, receiver, 'trace-flow-2');
    const traceId = String(flow.received.headers.traceparent).split('-')[1];
    expect(traceId).not.toBe(CALLER_TRACE);
    const spans = await eventually(
      () => inTrace(traceId).some((s) => s.name === 'POST') && inTrace(traceId),
      'the webhook request span',
    );
    const server = one(spans, 'POST /v1/trips/:id/delays');
    expect(parentOf(server)).toBeUndefined();
  });

  it('should send no traceparent to receivers when WEBHOOK_TRACEPARENT is off', async () => {
    svc.app.get<ObservabilityConfig>(OBSERVABILITY_CONFIG).webhookTraceparent =
      false;
    const flow = await runDelayFlow(svc, receiver, 'trace-flow-3');
    expect(flow.received.headers.traceparent).toBeUndefined();
    expect(flow.received.headers.tracestate).toBeUndefined();
  });
});
