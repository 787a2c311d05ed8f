import { Test, TestingModule } from '@nestjs/testing';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from 'nestjs-transactional-jobs/testing';
import { OrdersService } from '../src/orders.service';
import { DURABLE_QUEUE, ORDERS_QUEUE } from '../src/queue';
import { Order } from '../src/order.entity';

/** A stand-in for TypeORM's EntityManager: the repository `save()` the service calls. */
function fakeManager(saved: string[]) {
  return {
    getRepository: () => ({
      save: async (order: Partial<Order>) => {
        saved.push(order.label!);
        return { id: `id-${order.label}`, ...order };
      },
    }),
    query: async () => [],
  } as any;
}

describe('the testing kit, imported as nestjs-transactional-jobs/testing', () => {
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let service: OrdersService;
  const saved: string[] = [];

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          queues: [ORDERS_QUEUE, DURABLE_QUEUE],
          entityManager: fakeManager(saved),
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
    expect(kit.jobs(ORDERS_QUEUE)).toEqual([
      expect.objectContaining({
        id: service.jobIds.get('kit'),
        data: { orderId: 'id-kit' },
      }),
    ]);
    expect(kit.statements()).toEqual(['BEGIN', 'COMMIT']);
  });

  it('should drop the job of a transaction that rolls back', async () => {
    await expect(service.create('kit-refused', true)).rejects.toThrow(
      'order kit-refused refused',
    );
    expect(kit.jobs(ORDERS_QUEUE)).toEqual([]);
    expect(kit.dropped(ORDERS_QUEUE)).toEqual([
      expect.objectContaining({ id: service.jobIds.get('kit-refused') }),
    ]);
    expect(kit.statements()).toEqual(['BEGIN', 'ROLLBACK']);
  });

  it('should keep the outer job and drop the job of a NESTED scope rolled back to its savepoint', async () => {
    await service.createWithFailingNested('kit-outer');
    expect(kit.jobs(ORDERS_QUEUE).map((job) => job.data.orderId)).toEqual([
      'id-kit-outer',
    ]);
    expect(kit.dropped(ORDERS_QUEUE).map((job) => job.data.orderId)).toEqual([
      'id-kit-outer-inner',
    ]);
    expect(kit.statements()).toEqual([
      'BEGIN',
      'SAVEPOINT tx_sp_1',
      'ROLLBACK TO SAVEPOINT tx_sp_1',
      'COMMIT',
    ]);
  });
});
