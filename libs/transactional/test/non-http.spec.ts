import { InjectQueue, Process, Processor } from '@nestjs/bull';
import { INestApplication, Injectable } from '@nestjs/common';
import type { Job, Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { dbQuery, transactionId } from './support/db';
import { describeBullOnly } from './support/queue-kind';

/** Jobs that start the work (added from outside any transaction). */
const ORDERS = uniqueName('non-http-orders');
/** Jobs the work queues through the TransactionAwareQueue; their processor reads the row. */
const RECEIPTS = uniqueName('non-http-receipts');

type OrderJob = { marker: string; fail?: boolean };
type ReceiptJob = { marker: string; orderId: string };
type Fulfilled = { orderId: string; receiptJobId: string; txid: string };

/** What the work and the processors did, in order. */
const events: string[] = [];
/** Receipt jobs processed, by marker. */
const receipts = new Map<string, { jobId: string; orderId: string }>();

@Injectable()
class Fulfilment {
  constructor(
    private readonly host: TransactionHost,
    @InjectTransactionAwareQueue(RECEIPTS)
    private readonly receiptQueue: TransactionAwareQueue<ReceiptJob>,
  ) {}

  /** Writes the order row and queues its receipt job, in one transaction. */
  @Transactional()
  async fulfil({ marker, fail }: OrderJob): Promise<Fulfilled> {
    const order = await this.host.getRepository(Order).save({ label: marker });
    const receiptJobId = await this.receiptQueue.add({
      marker,
      orderId: order.id,
    });
    const queued = await inRedis(this.receiptQueue.queue, receiptJobId);
    events.push(`${marker}: receipt queued (in Redis: ${queued})`);
    // Time enough for a prematurely enqueued receipt job to run and miss the row.
    await dbQuery(this.host.manager, 'SELECT pg_sleep(0.2)');
    const txid = await transactionId(this.host.manager);
    events.push(`${marker}: about to commit`);
    if (fail) throw new Error(`fulfilment of ${marker} failed`);
    return { orderId: order.id, receiptJobId, txid };
  }
}

@Processor(ORDERS)
class OrdersProcessor {
  constructor(
    private readonly fulfilment: Fulfilment,
    private readonly host: TransactionHost,
    @InjectQueue(RECEIPTS) private readonly receiptQueue: Queue<ReceiptJob>,
  ) {}

  /** Calls the @Transactional service. */
  @Process()
  handle(job: Job<OrderJob>) {
    return this.fulfilment.fulfil(job.data);
  }

  /** Is itself @Transactional; the service joins its transaction. */
  @Process('decorated')
  @Transactional()
  async handleDecorated(job: Job<OrderJob>) {
    const txid = await transactionId(this.host.manager);
    const result = await this.fulfilment.fulfil(job.data);
    const queued = await inRedis(this.receiptQueue, result.receiptJobId);
    events.push(
      `${job.data.marker}: service returned (same transaction: ${txid === result.txid}, receipt in Redis: ${queued})`,
    );
    return result;
  }
}

@Processor(RECEIPTS)
class ReceiptsProcessor {
  constructor(private readonly dataSource: DataSource) {}

  @Process()
  async handle(job: Job<ReceiptJob>) {
    const row = await this.dataSource
      .getRepository(Order)
      .findOneBy({ id: job.data.orderId });
    events.push(`${job.data.marker}: receipt job finds the row: ${!!row}`);
    receipts.set(job.data.marker, {
      jobId: String(job.id),
      orderId: job.data.orderId,
    });
  }
}

describeBullOnly(
  "its processors are @nestjs/bull's @Processor/@Process classes",
)('when @Transactional work runs without an HTTP request', () => {
  let app: INestApplication;
  let orders: Queue<OrderJob>;
  let receiptQueue: Queue<ReceiptJob>;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Fulfilment, OrdersProcessor, ReceiptsProcessor],
      queues: [{ name: ORDERS }, { name: RECEIPTS }],
      listen: false,
    });
    orders = bullQueue(app, ORDERS);
    receiptQueue = bullQueue(app, RECEIPTS);
  });

  afterAll(() => closeLibApp(app, [ORDERS, RECEIPTS]));

  beforeEach(() => {
    events.length = 0;
  });

  const rowsLabelled = (marker: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label: marker });

  /** Waits for the job to complete or fail; returns it as Redis then holds it. */
  async function settled(job: Job<OrderJob>) {
    await waitFor(
      async () => (await job.isCompleted()) || (await job.isFailed()),
      `job ${job.id} to settle`,
    );
    // NOTE: read the job again: its result and failure reason are written with its state.
    return (await orders.getJob(job.id))!;
  }

  describe('when a Bull processor calls a @Transactional service', () => {
    it('should queue the next job only after the processor transaction commits, so that its processor finds the row', async () => {
      const marker = uniqueName('processor');

      const job = await settled(await orders.add({ marker }));
      await waitFor(() => receipts.has(marker), 'the receipt job');

      expect(await job.isCompleted()).toBe(true);
      const result = job.returnvalue as Fulfilled;
      expect(receipts.get(marker)).toEqual({
        jobId: result.receiptJobId,
        orderId: result.orderId,
      });
      expect(events).toEqual([
        `${marker}: receipt queued (in Redis: false)`,
        `${marker}: about to commit`,
        `${marker}: receipt job finds the row: true`,
      ]);
    });

    it('should also run a processor method that is itself @Transactional in one transaction with the service', async () => {
      const marker = uniqueName('decorated-processor');

      const job = await settled(await orders.add('decorated', { marker }));
      await waitFor(() => receipts.has(marker), 'the receipt job');

      expect(await job.isCompleted()).toBe(true);
      expect(events).toEqual([
        `${marker}: receipt queued (in Redis: false)`,
        `${marker}: about to commit`,
        `${marker}: service returned (same transaction: true, receipt in Redis: false)`,
        `${marker}: receipt job finds the row: true`,
      ]);
    });

    it('should fail the job, roll back the row and drop the next job when the service throws', async () => {
      const marker = uniqueName('processor-fails');

      const job = await settled(await orders.add({ marker, fail: true }));

      expect(await job.isFailed()).toBe(true);
      expect(job.failedReason).toBe(`fulfilment of ${marker} failed`);
      expect(events).toEqual([
        `${marker}: receipt queued (in Redis: false)`,
        `${marker}: about to commit`,
      ]);
      expect(await rowsLabelled(marker)).toBe(0);
      const stillWaiting = await receiptQueue.getJobs([
        'waiting',
        'active',
        'completed',
      ]);
      expect(stillWaiting.map((j) => j.data.marker)).not.toContain(marker);
      expect(receipts.has(marker)).toBe(false);
    });
  });

  describe('when a script calls the service through app.get()', () => {
    it('should run it in a transaction and queue the next job after the commit', async () => {
      const marker = uniqueName('script');

      const result = await app.get(Fulfilment).fulfil({ marker });

      expect(await rowsLabelled(marker)).toBe(1);
      expect(await inRedis(receiptQueue, result.receiptJobId)).toBe(true);
      await waitFor(() => receipts.has(marker), 'the receipt job');
      expect(events).toEqual([
        `${marker}: receipt queued (in Redis: false)`,
        `${marker}: about to commit`,
        `${marker}: receipt job finds the row: true`,
      ]);
    });

    it('should roll back the row and drop the next job when it throws', async () => {
      const marker = uniqueName('script-fails');

      await expect(
        app.get(Fulfilment).fulfil({ marker, fail: true }),
      ).rejects.toThrow(`fulfilment of ${marker} failed`);

      expect(await rowsLabelled(marker)).toBe(0);
      expect(events).toEqual([
        `${marker}: receipt queued (in Redis: false)`,
        `${marker}: about to commit`,
      ]);
      const jobs = await receiptQueue.getJobs([
        'waiting',
        'active',
        'completed',
      ]);
      expect(jobs.map((j) => j.data.marker)).not.toContain(marker);
    });

    it('should give concurrent calls from one script a transaction each', async () => {
      const markers = Array.from({ length: 10 }, (_, i) =>
        uniqueName(`script-${i}`),
      );

      const results = await Promise.all(
        markers.map((marker) => app.get(Fulfilment).fulfil({ marker })),
      );
      await waitFor(
        () => markers.every((marker) => receipts.has(marker)),
        'the receipt jobs',
      );

      expect(new Set(results.map((r) => r.txid)).size).toBe(markers.length);
      markers.forEach((marker, i) => {
        expect(receipts.get(marker)).toEqual({
          jobId: results[i].receiptJobId,
          orderId: results[i].orderId,
        });
      });
      expect(
        events.filter((event) => event.endsWith('finds the row: false')),
      ).toEqual([]);
    });
  });
});
