import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  PlainQueueInTransactionError,
  TransactionHost,
} from 'nestjs-transactional-jobs';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AppModule } from '../src/app.module.js';
import { Order } from '../src/order.entity.js';
import { OrdersService } from '../src/orders.service.js';
import {
  DURABLE_QUEUE,
  jobExists,
  ORDERS_QUEUE,
  plainAdd,
  removeQueue,
  startWorker,
} from '../src/queue.js';
import { databaseUrl, redisUrl, uniquePrefix, waitFor } from './env.js';

const REQUESTS = Number(process.env.CONSUMER_REQUESTS ?? 100);

describe('an app that installed nestjs-transactional-jobs from its tarball', () => {
  let app: INestApplication;
  let dataSource: DataSource;
  let service: OrdersService;
  /** What the workers saw: every job's order id, and whether its row was there. */
  const seen = new Map<string, boolean>();

  before(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        AppModule.forRoot({
          databaseUrl: databaseUrl(),
          redisUrl: redisUrl(),
          prefix: uniquePrefix(),
        }),
      ],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    dataSource = app.get(DataSource);
    service = app.get(OrdersService);
    for (const queue of [ORDERS_QUEUE, DURABLE_QUEUE]) {
      await startWorker(app, queue, async (data: { orderId: string }) => {
        const row = await dataSource
          .getRepository(Order)
          .findOneBy({ id: data.orderId });
        seen.set(data.orderId, row !== null);
      });
    }
  });

  after(async () => {
    if (!app) return;
    for (const queue of [ORDERS_QUEUE, DURABLE_QUEUE]) {
      await removeQueue(app, queue).catch(() => undefined);
    }
    await app.close();
  });

  /** POSTs `total` orders to `path`, 8 at a time; returns the response bodies. */
  async function hammer(path: string, total: number, label: string) {
    const url = await app.getUrl();
    const bodies: { id: string; jobId: string }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < total) {
          const n = next++;
          const res = await request(url)
            .post(path)
            .send({ label: `${label}-${n}` })
            .expect(201);
          bodies.push(res.body);
        }
      }),
    );
    return bodies;
  }

  for (const [what, path, label] of [
    ['a @Transactional() controller handler', '/orders', 'handler'],
    ['a @Transactional() provider method', '/orders/via-service', 'provider'],
  ]) {
    it(`should let a worker find every row committed by ${what}`, async () => {
      const bodies = await hammer(path, REQUESTS, label);
      await waitFor(
        () => bodies.every((body) => seen.has(body.id)),
        'every job to be processed',
      );
      assert.deepEqual(
        bodies.filter((body) => seen.get(body.id) !== true),
        [],
      );
      assert.equal(new Set(bodies.map((body) => body.jobId)).size, REQUESTS);
    });
  }

  it('should leave no row and no job when the transaction rolls back', async () => {
    const res = await request(await app.getUrl())
      .post('/orders/via-service')
      .send({ label: 'refused', fail: true });
    assert.equal(res.status, 500);
    const jobId = service.jobIds.get('refused');
    assert.equal(typeof jobId, 'string');
    // Give a wrongly enqueued job the time to show up.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await jobExists(app, ORDERS_QUEUE, jobId!), false);
    assert.equal(
      await dataSource.getRepository(Order).countBy({ label: 'refused' }),
      0,
    );
  });

  it('should drop only the job of a NESTED scope that rolled back to its savepoint', async () => {
    await service.createWithFailingNested('outer');
    const outer = service.jobIds.get('outer')!;
    const inner = service.jobIds.get('outer-inner')!;
    await waitFor(() => jobExists(app, ORDERS_QUEUE, outer), 'the outer job');
    assert.equal(await jobExists(app, ORDERS_QUEUE, inner), false);
    const labels = (await dataSource.getRepository(Order).find())
      .map((order) => order.label)
      .filter((label) => label.startsWith('outer'));
    assert.deepEqual(labels, ['outer']);
  });

  it('should deliver a durable job through the outbox and leave no outbox row on rollback', async () => {
    const res = await request(await app.getUrl())
      .post('/orders/via-service')
      .send({ label: 'durable', durable: true })
      .expect(201);
    await waitFor(() => seen.get(res.body.id) === true, 'the durable job');
    const written = await dataSource.query(
      'SELECT queue FROM transactional_outbox WHERE id = $1',
      [res.body.jobId],
    );
    assert.deepEqual(written, [{ queue: DURABLE_QUEUE }]);
    await request(await app.getUrl())
      .post('/orders/via-service')
      .send({ label: 'durable-refused', durable: true, fail: true })
      .expect(500);
    const refused = service.jobIds.get('durable-refused')!;
    const rows = await dataSource.query(
      'SELECT id FROM transactional_outbox WHERE id = $1',
      [refused],
    );
    assert.deepEqual(rows, []);
    assert.equal(await jobExists(app, DURABLE_QUEUE, refused), false);
  });

  it('should reject a plain queue add() inside a transaction (plainQueueInTransaction: throw)', async () => {
    const tx = app.get(TransactionHost);
    await assert.rejects(
      tx.withTransaction(() => plainAdd(app, ORDERS_QUEUE, { orderId: 'x' })),
      PlainQueueInTransactionError,
    );
  });
});
