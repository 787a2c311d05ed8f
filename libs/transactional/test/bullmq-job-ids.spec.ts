import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionalError,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { bullQueue, closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

const QUEUE = uniqueName('bullmq-ids');
const PLAIN = uniqueName('bullmq-ids-plain');

type Payload = { label: string };

@Injectable()
class Orders {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    readonly queue: TransactionAwareQueue<Payload, Queue<Payload>>,
  ) {}

  /** Writes a row and adds its job with `opts`; resolves with the job id. */
  @Transactional()
  async create(label: string, opts?: Record<string, unknown>) {
    await this.tx.getRepository(Order).save({ label });
    return this.queue.add('order', { label }, opts);
  }
}

describeBullMQOnly('when jobs are added to a BullMQ queue', () => {
  let app: INestApplication;
  let orders: Orders;
  let queue: Queue<Payload>;
  let plain: Queue;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Orders],
      queues: [{ name: QUEUE }, { name: PLAIN }],
      listen: false,
    });
    orders = app.get(Orders);
    queue = bullQueue(app, QUEUE) as unknown as Queue<Payload>;
    plain = bullQueue(app, PLAIN) as unknown as Queue;
  });

  afterAll(() => closeLibApp(app, [QUEUE, PLAIN]));

  const rows = (label: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label });

  it('should pick the BullMQ adapter from the queue', () => {
    expect(orders.queue.adapter.kind).toBe('bullmq');
    expect(orders.queue.queue).toBe(
      app.get(`BullQueue_${QUEUE}`, { strict: false }),
    );
  });

  it('should generate a UUID job id up front and give it to BullMQ', async () => {
    const label = uniqueName('generated');
    const id = await orders.create(label);
    expect(id).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    const job = await queue.getJob(id);
    expect(job).toMatchObject({ id, name: 'order', data: { label } });
  });

  it('should name a job added without a name "__default__", as Bull does', async () => {
    const id = await app
      .get(TransactionHost)
      .withTransaction(() => orders.queue.add({ label: 'unnamed' }));
    expect((await queue.getJob(id))?.name).toBe('__default__');
  });

  it('should let BullMQ ignore a re-enqueue of a custom id (the first job wins)', async () => {
    const jobId = uniqueName('order');
    const before = await queue.getJobCountByTypes('waiting', 'prioritized');
    expect(await orders.create(uniqueName('first'), { jobId })).toBe(jobId);
    expect(await orders.create(uniqueName('second'), { jobId })).toBe(jobId);
    const job = await queue.getJob(jobId);
    expect(job?.data.label).toMatch(/^first-/);
    expect(await queue.getJobCountByTypes('waiting', 'prioritized')).toBe(
      before + 1,
    );
  });

  it('should map delay and priority to BullMQ as they are', async () => {
    const delayed = await orders.create(uniqueName('delayed'), {
      delay: 60_000,
    });
    const urgent = await orders.create(uniqueName('urgent'), { priority: 3 });
    expect(await queue.getJobState(delayed)).toBe('delayed');
    expect(await queue.getJobState(urgent)).toBe('prioritized');
    expect((await queue.getJob(urgent))?.opts.priority).toBe(3);
  });

  describe('when a custom id breaks BullMQ rules', () => {
    // The ids BullMQ (the installed version) refuses and accepts, asked of a plain queue.
    const candidates = [
      '42',
      '0',
      '0:1',
      'a:b',
      'order-7',
      '07',
      '1e3',
      'x:y:z',
    ];

    it.each(candidates)(
      'should accept or refuse %p exactly as BullMQ does, refusing inside the transaction (rolled back)',
      async (jobId) => {
        const byBullMQ = await plain.add('probe', {}, { jobId }).then(
          () => 'accepted',
          (error: Error) => `refused: ${error.message}`,
        );
        const label = uniqueName('rule');
        const byUs = await orders.create(label, { jobId }).then(
          () => 'accepted',
          (error: Error) => {
            expect(error).toBeInstanceOf(TransactionalError);
            expect(error.message).toContain(`job id "${jobId}"`);
            return 'refused';
          },
        );
        expect(byUs).toBe(byBullMQ === 'accepted' ? 'accepted' : 'refused');
        expect(await rows(label)).toBe(byUs === 'accepted' ? 1 : 0);
      },
    );

    it('should refuse a number with a message that says what to pass', async () => {
      const label = uniqueName('number');
      await expect(orders.create(label, { jobId: 7 })).rejects.toThrow(
        'job id 7 is not a string',
      );
      expect(await rows(label)).toBe(0);
    });
  });

  it('should refuse opts.repeat (BullMQ 6 removed it from add) and roll back', async () => {
    const label = uniqueName('repeat');
    await expect(
      orders.create(label, { repeat: { every: 60_000 } }),
    ).rejects.toThrow(/opts\.repeat is not supported.*upsertJobScheduler/);
    expect(await rows(label)).toBe(0);
  });
});
