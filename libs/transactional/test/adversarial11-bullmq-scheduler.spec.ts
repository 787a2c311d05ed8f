/**
 * adversarial11: BullMQ job schedulers inside a transaction. `upsertJobScheduler` (BullMQ's
 * replacement of `repeat`) writes the schedule AND its first job to Redis at once; it is no
 * `add()`, so neither the plain-queue detector nor the transaction-aware queue sees it. Called on
 * `queue.queue` (or a plain injected Queue) inside a transaction that rolls back, the schedule
 * and its first job survive the rollback: the bug the detector exists for
 * (README "The plain-queue detector": `plainQueueInTransaction: 'throw'` rejects with
 * `PlainQueueInTransactionError`).
 */
import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bullmq';
import {
  InjectTransactionAwareQueue,
  PlainQueueInTransactionError,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

jest.setTimeout(30_000);

const AWARE = uniqueName('a11-sched');

@Injectable()
class Producer {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue(AWARE)
    readonly aware: TransactionAwareQueue<unknown, Queue>,
  ) {}

  /** Saves a row, runs `fn`, then rolls back (throws). */
  @Transactional()
  async thenRollBack(fn: () => Promise<unknown>): Promise<never> {
    await this.host.getRepository(Order).save({ label: uniqueName('sched') });
    await fn();
    throw new Error('roll back');
  }
}

describeBullMQOnly('upsertJobScheduler inside a transaction', () => {
  let app: INestApplication;
  let producer: Producer;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Producer],
      queues: [{ name: AWARE }],
      options: { plainQueueInTransaction: 'throw' },
      listen: false,
    });
    producer = app.get(Producer);
  });
  afterAll(() => closeLibApp(app, [AWARE]));

  it("policy 'throw': queue.queue.upsertJobScheduler() in a transaction that rolls back is refused (PlainQueueInTransactionError) and leaves no schedule and no job in Redis", async () => {
    const plain = producer.aware.queue;
    // control: a plain add() in the same place is refused
    await expect(
      producer.thenRollBack(() => plain.add('x', { n: 1 })),
    ).rejects.toBeInstanceOf(PlainQueueInTransactionError);
    const outcome = await producer
      .thenRollBack(() =>
        plain.upsertJobScheduler(
          'every-minute',
          { every: 60_000 },
          { name: 'tick', data: { n: 2 } },
        ),
      )
      .then(
        () => 'resolved',
        (error: unknown) =>
          error instanceof PlainQueueInTransactionError
            ? 'PlainQueueInTransactionError'
            : `other: ${String(error)}`,
      );
    const schedulers = await plain.getJobSchedulers();
    const counts = await plain.getJobCounts(
      'waiting',
      'delayed',
      'prioritized',
    );
    expect({
      outcome,
      schedulers: schedulers.map((s) => s.key),
      counts,
    }).toEqual({
      outcome: 'PlainQueueInTransactionError',
      schedulers: [],
      counts: { waiting: 0, delayed: 0, prioritized: 0 },
    });
  });
});
