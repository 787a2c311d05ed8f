import { Test, TestingModule } from '@nestjs/testing';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from 'nestjs-transactional-jobs/testing';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Order } from '../src/order.entity.js';
import { OrdersService } from '../src/orders.service.js';
import { DURABLE_QUEUE, ORDERS_QUEUE } from '../src/queue.js';

/** A stand-in for TypeORM's EntityManager: the repository `save()` and `query()` the service calls. */
function stubManager() {
  return {
    getRepository: () => ({
      save: async (order: Partial<Order>) => ({
        id: `id-${order.label}`,
        ...order,
      }),
    }),
    query: async () => [],
  } as any;
}

describe('the testing kit, imported as nestjs-transactional-jobs/testing', () => {
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let service: OrdersService;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          queues: [ORDERS_QUEUE, DURABLE_QUEUE],
          entityManager: stubManager(),
        }),
      ],
      providers: [OrdersService],
    }).compile();
    await moduleRef.init();
    kit = moduleRef.get(TransactionalTestingKit);
    service = moduleRef.get(OrdersService);
  });

  afterEach(() => moduleRef.close());

  it('should record a job after the commit, with the id add() resolved with', async () => {
    await service.create('kit');
    const jobs = kit.jobs(ORDERS_QUEUE);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0].id, service.jobIds.get('kit'));
    assert.deepEqual(jobs[0].data, { orderId: 'id-kit' });
    assert.deepEqual(kit.statements(), ['BEGIN', 'COMMIT']);
  });

  it('should drop the job of a transaction that rolls back', async () => {
    await assert.rejects(service.create('kit-refused', true), {
      message: 'order kit-refused refused',
    });
    assert.deepEqual(kit.jobs(ORDERS_QUEUE), []);
    assert.deepEqual(
      kit.dropped(ORDERS_QUEUE).map((job) => job.id),
      [service.jobIds.get('kit-refused')],
    );
    assert.deepEqual(kit.statements(), ['BEGIN', 'ROLLBACK']);
  });

  it('should keep the outer job and drop the job of a NESTED scope rolled back to its savepoint', async () => {
    await service.createWithFailingNested('kit-outer');
    assert.deepEqual(
      kit.jobs(ORDERS_QUEUE).map((job) => job.data.orderId),
      ['id-kit-outer'],
    );
    assert.deepEqual(
      kit.dropped(ORDERS_QUEUE).map((job) => job.data.orderId),
      ['id-kit-outer-inner'],
    );
    assert.deepEqual(kit.statements(), [
      'BEGIN',
      'SAVEPOINT tx_sp_1',
      'ROLLBACK TO SAVEPOINT tx_sp_1',
      'COMMIT',
    ]);
  });
});
