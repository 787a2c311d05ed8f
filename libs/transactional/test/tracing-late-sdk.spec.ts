import { INestApplication } from '@nestjs/common';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import {
  TransactionAwareQueue,
  TransactionHost,
  getTransactionAwareQueueToken,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';

const QUEUE = uniqueName('tracing-late-sdk');

// NOTE: the library skips building spans while no SDK is registered; this checks that it asks
// on every transaction, so an SDK registered after start-up (or removed) is seen at once.
describe('when an OpenTelemetry SDK is registered after the library has run transactions', () => {
  let app: INestApplication;
  let tx: TransactionHost;
  let queue: TransactionAwareQueue<{ n: number }>;
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const contextManager = new AsyncLocalStorageContextManager();

  beforeAll(async () => {
    app = await createLibApp({ queues: [{ name: QUEUE }], listen: false });
    tx = app.get(TransactionHost);
    queue = app.get(getTransactionAwareQueueToken(QUEUE));
  });

  afterAll(async () => {
    await closeLibApp(app, [QUEUE]);
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  const commitOne = async (n: number) => {
    const id = await tx.withTransaction(async () => {
      await tx.getRepository(Order).save({ label: `late-sdk-${n}` });
      return queue.add({ n });
    });
    await waitFor(
      async () => (await bullQueue(app, QUEUE).getJob(id)) !== null,
      `job ${n} in Redis`,
    );
  };

  it('should trace the transactions and enqueues that follow the registration, and stop when it is removed', async () => {
    await commitOne(1);

    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
    await commitOne(2);
    const spans = exporter.getFinishedSpans();
    const transaction = spans.find((s) => s.name === 'transaction');
    const enqueue = spans.find((s) => s.name === `${QUEUE} enqueue`);
    expect(spans.map((s) => s.name).sort()).toEqual(
      [`${QUEUE} enqueue`, 'transaction'].sort(),
    );
    expect(transaction!.attributes['transaction.outcome']).toBe('commit');
    expect(enqueue!.attributes['messaging.outcome']).toBe('enqueued');
    expect(enqueue!.parentSpanContext?.spanId).toBe(
      transaction!.spanContext().spanId,
    );

    trace.disable();
    exporter.reset();
    await commitOne(3);
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
