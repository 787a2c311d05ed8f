import { InjectQueue } from '@nestjs/bull';
import { Controller, INestApplication, Post } from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
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
  closeLibApp,
  createLibApp,
  processJobs,
  waitFor,
} from './support/lib-app';
import { LIB_QUEUE } from './support/queue-kind';
import { dbQuery } from './support/db';

const NAIVE = uniqueName('race-naive');
const AWARE = uniqueName('race-aware');
const REQUESTS = Number(process.env.RACE_N ?? 200);

@Controller()
class OrdersController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectQueue(NAIVE) private readonly naive: Queue<{ orderId: string }>,
    @InjectTransactionAwareQueue(AWARE)
    private readonly aware: TransactionAwareQueue<{ orderId: string }>,
  ) {}

  @Post('naive')
  @Transactional()
  async createNaive() {
    const order = await this.tx.getRepository(Order).save({ label: 'naive' });
    // NOTE: named as Bull names a job without one, so the same call suits BullMQ (LIB_QUEUE).
    await this.naive.add('__default__', { orderId: order.id });
    await this.moreWork();
    return { id: order.id };
  }

  @Post('aware')
  @Transactional()
  async createAware() {
    const order = await this.tx.getRepository(Order).save({ label: 'aware' });
    await this.aware.add({ orderId: order.id });
    await this.moreWork();
    return { id: order.id };
  }

  /** What real handlers do after queueing: a little more database work before COMMIT. */
  private async moreWork() {
    await dbQuery(this.tx.manager, 'SELECT pg_sleep(0.003)');
  }
}

/** Runs `total` requests, `concurrency` at a time. */
async function hammer(
  app: INestApplication,
  path: string,
  total: number,
  concurrency = 8,
) {
  let next = 0;
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        const res = await request(await app.getUrl())
          .post(path)
          .expect(201);
        ids.push(res.body.id);
      }
    }),
  );
  return ids;
}

describe(`when a ${LIB_QUEUE} worker loads the row its job was queued for`, () => {
  let app: INestApplication;
  const outcomes: Record<string, { found: number; notFound: number }> = {
    [NAIVE]: { found: 0, notFound: 0 },
    [AWARE]: { found: 0, notFound: 0 },
  };

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [OrdersController],
      queues: [{ name: NAIVE }, { name: AWARE }],
      options: { plainQueueInTransaction: 'off' },
    });
    const dataSource = app.get(DataSource);
    for (const name of [NAIVE, AWARE]) {
      processJobs(app, name, 4, async (job) => {
        const order = await dataSource
          .getRepository(Order)
          .findOneBy({ id: job.data.orderId });
        outcomes[name][order ? 'found' : 'notFound']++;
      });
    }
  });

  afterAll(() => closeLibApp(app, [NAIVE, AWARE]));

  const processed = (name: string) =>
    outcomes[name].found + outcomes[name].notFound;

  it('should reproduce "not found" with a plain queue.add inside the transaction', async () => {
    await hammer(app, '/naive', REQUESTS);
    await waitFor(() => processed(NAIVE) === REQUESTS, 'naive jobs');
    // If the race never shows, this spec proves nothing about the fix: fail loudly.
    expect(outcomes[NAIVE].notFound).toBeGreaterThan(0);
  });

  it('should never miss the row with TransactionAwareQueue', async () => {
    const ids = await hammer(app, '/aware', REQUESTS);
    await waitFor(() => processed(AWARE) === REQUESTS, 'aware jobs');
    expect(outcomes[AWARE]).toEqual({ found: REQUESTS, notFound: 0 });
    expect(new Set(ids).size).toBe(REQUESTS);
  });
});
