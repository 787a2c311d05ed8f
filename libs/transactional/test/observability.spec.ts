import { INestApplication } from '@nestjs/common';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import {
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  TransactionalMetrics,
  TransactionalOutbox,
  getTransactionAwareQueueToken,
} from '../src';
import { DataSource } from 'typeorm';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { createOutboxTable } from './support/outbox-table';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { dbQuery } from './support/db';

const QUEUE = uniqueName('observability');
const DURABLE = uniqueName('observability-durable');
const OUTBOX_TABLE = 'tx_spec_outbox_observability';

describe('when the library is observed (metrics snapshot, OpenTelemetry spans)', () => {
  let app: INestApplication;
  let tx: TransactionHost;
  let queue: TransactionAwareQueue<{ n: number }>;
  let metrics: TransactionalMetrics;
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const contextManager = new AsyncLocalStorageContextManager();

  beforeAll(async () => {
    await createOutboxTable(OUTBOX_TABLE);
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
    app = await createLibApp({
      queues: [{ name: QUEUE }, { name: DURABLE, durable: true }],
      options: {
        outbox: { tableName: OUTBOX_TABLE, relay: { enabled: false } },
      },
      listen: false,
    });
    tx = app.get(TransactionHost);
    queue = app.get(getTransactionAwareQueueToken(QUEUE));
    metrics = app.get(TransactionalMetrics);
  });

  afterAll(async () => {
    await closeLibApp(app, [QUEUE, DURABLE]);
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  beforeEach(() => exporter.reset());

  const queueStats = (name = QUEUE) =>
    metrics.snapshot().queues.find((q) => q.queue === name)!;
  const spans = () => exporter.getFinishedSpans();
  const named = (name: string) => spans().filter((s) => s.name === name);
  const outcome = (span: ReadableSpan, key: string) => span.attributes[key];

  it('should count a commit and its enqueued jobs, and trace the transaction with its enqueue as a child', async () => {
    const before = metrics.snapshot();
    const ids = await tx.withTransaction(async () => {
      await tx.getRepository(Order).save({ label: 'metrics-commit' });
      return [await queue.add({ n: 1 }), await queue.add({ n: 2 })];
    });
    await waitFor(
      async () => (await bullQueue(app, QUEUE).getJob(ids[1])) !== null,
      'the jobs in Redis',
    );
    const after = metrics.snapshot();
    expect(after.transactions.committed - before.transactions.committed).toBe(
      1,
    );
    expect(after.transactions.rolledBack).toBe(before.transactions.rolledBack);
    const stats = queueStats();
    const was = before.queues.find((q) => q.queue === QUEUE)!;
    expect(stats.deferred - was.deferred).toBe(2);
    expect(stats.enqueued - was.enqueued).toBe(2);
    expect(stats.droppedOnRollback).toBe(was.droppedOnRollback);

    const [transaction] = named('transaction');
    const [enqueue] = named(`${QUEUE} enqueue`);
    expect(outcome(transaction, 'transaction.outcome')).toBe('commit');
    expect(outcome(enqueue, 'messaging.outcome')).toBe('enqueued');
    expect(enqueue.attributes['messaging.batch.message_count']).toBe(2);
    expect(enqueue.spanContext().traceId).toBe(
      transaction.spanContext().traceId,
    );
    expect(enqueue.parentSpanContext?.spanId).toBe(
      transaction.spanContext().spanId,
    );
  });

  it('should count jobs dropped by a rollback and end their span as dropped', async () => {
    const before = queueStats();
    const rolledBack = metrics.snapshot().transactions.rolledBack;
    await expect(
      tx.withTransaction(async () => {
        await queue.add({ n: 3 });
        await queue.addBulk([{ data: { n: 4 } }, { data: { n: 5 } }]);
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    expect(queueStats().droppedOnRollback - before.droppedOnRollback).toBe(3);
    expect(queueStats().enqueued).toBe(before.enqueued);
    expect(metrics.snapshot().transactions.rolledBack).toBe(rolledBack + 1);
    const [transaction] = named('transaction');
    expect(outcome(transaction, 'transaction.outcome')).toBe('rollback');
    expect(transaction.status).toEqual({ code: 2, message: 'refused' });
    const [enqueue] = named(`${QUEUE} enqueue`);
    expect(outcome(enqueue, 'messaging.outcome')).toBe('dropped');
    expect(enqueue.attributes['messaging.batch.message_count']).toBe(3);
  });

  it('should count only the jobs of a NESTED scope that rolled back as dropped', async () => {
    const before = queueStats();
    await tx.withTransaction(async () => {
      await queue.add({ n: 6 });
      await tx
        .withTransaction(
          async () => {
            await queue.add({ n: 7 });
            await queue.add({ n: 8 });
            throw new Error('inner');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
    });
    await waitFor(
      () => queueStats().enqueued - before.enqueued === 1,
      'the outer job enqueued',
    );
    expect(queueStats().droppedOnRollback - before.droppedOnRollback).toBe(2);
    expect(queueStats().deferred - before.deferred).toBe(3);
    const outcomes = named(`${QUEUE} enqueue`)
      .map((s) => outcome(s, 'messaging.outcome'))
      .sort();
    expect(outcomes).toEqual(['dropped', 'enqueued']);
  });

  it('should count relay polls, batches and relayed rows, and report the outbox table', async () => {
    const durable = app.get<TransactionAwareQueue<{ n: number }>>(
      getTransactionAwareQueueToken(DURABLE),
    );
    const outbox = app.get(TransactionalOutbox);
    await outbox.relayOnce();
    expect(metrics.snapshot().relay).toEqual({
      polls: 1,
      batches: 0,
      relayed: 0,
      failedPolls: 0,
    });
    // A committed durable row the fast path did not mark: made eligible for the relay at once.
    await tx.withTransaction(() =>
      durable.add({ n: 9 }, { jobId: 'relayed-9' }),
    );
    const manager = app.get(DataSource).manager;
    await waitFor(
      async () =>
        (
          await dbQuery(
            manager,
            `SELECT 1 FROM "${OUTBOX_TABLE}" WHERE dispatched_at IS NOT NULL`,
          )
        ).length === 1,
      'the fast path to mark the row',
    );
    await dbQuery(
      manager,
      `UPDATE "${OUTBOX_TABLE}" SET dispatched_at = NULL, available_at = now() - interval '1 minute'`,
    );
    const pending = await metrics.outbox();
    expect(pending).toEqual({
      ...(await outbox.stats()),
      oldestPendingAgeMs: expect.any(Number),
    });
    expect(pending!.pending).toBe(1);
    expect(pending!.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
    await expect(outbox.relayOnce()).resolves.toBe(1);
    expect(metrics.snapshot().relay).toEqual({
      polls: 2,
      batches: 1,
      relayed: 1,
      failedPolls: 0,
    });
    expect((await metrics.outbox())!.pending).toBe(0);
  });
});
