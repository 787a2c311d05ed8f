import { Injectable } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import type { FlowJob, Queue } from 'bullmq';
import {
  FlowJobIds,
  InjectTransactionAwareFlowProducer,
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionalError,
  TransactionAwareFlowProducer,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';

/** A service written against BullMQ queues and a flow producer. */
@Injectable()
class Shipping {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue('labels')
    readonly labels: TransactionAwareQueue<{ order: string }, Queue>,
    @InjectTransactionAwareFlowProducer('shipments')
    readonly flows: TransactionAwareFlowProducer,
  ) {}

  @Transactional()
  async ship(order: string, jobId?: string) {
    return this.labels.add('print', { order }, jobId ? { jobId } : {});
  }

  @Transactional()
  async shipFlow(order: string): Promise<FlowJobIds> {
    const flow: FlowJob = {
      name: 'ship',
      queueName: 'shipments',
      data: { order },
      children: [{ name: 'print', queueName: 'labels', data: { order } }],
    };
    return this.flows.add(flow);
  }

  @Transactional()
  async shipWithFailingExtra(order: string) {
    await this.labels.add('print', { order });
    await this.host
      .withTransaction(
        async () => {
          await this.labels.add('gift-note', { order });
          throw new Error('no gift wrap');
        },
        { propagation: Propagation.Nested },
      )
      .catch(() => undefined);
  }
}

// NOTE: no Redis, no database: this spec runs the same under LIB_QUEUE=bull and bullmq.
describe('when the testing kit stands in for BullMQ queues and flow producers', () => {
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let shipping: Shipping;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: 'bullmq',
          queues: ['labels', { name: 'shipments', mode: 'run' }],
          flowProducers: ['shipments'],
        }),
      ],
      providers: [Shipping],
    }).compile();
    await moduleRef.init();
    kit = moduleRef.get(TransactionalTestingKit);
    shipping = moduleRef.get(Shipping);
  });

  afterEach(() => moduleRef.close());

  it('should capture the job after the commit under the id add() resolved with', async () => {
    const id = await shipping.ship('o-1');
    expect(shipping.labels.adapter.kind).toBe('bullmq');
    expect(kit.jobs('labels')).toEqual([
      { id, name: 'print', data: { order: 'o-1' }, opts: { jobId: id } },
    ]);
    expect(kit.statements()).toEqual(['BEGIN', 'COMMIT']);
  });

  it('should refuse a custom id BullMQ would refuse, as production does, and roll back', async () => {
    await expect(shipping.ship('o-2', '42')).rejects.toThrow(
      TransactionalError,
    );
    await expect(shipping.ship('o-2', '42')).rejects.toThrow(
      'job id "42" is an integer',
    );
    expect(kit.jobs('labels')).toEqual([]);
    expect(kit.statements()).toEqual([
      'BEGIN',
      'ROLLBACK',
      'BEGIN',
      'ROLLBACK',
    ]);
  });

  it('should drop the jobs of a NESTED scope that rolled back', async () => {
    await shipping.shipWithFailingExtra('o-3');
    expect(kit.jobs('labels').map((job) => job.name)).toEqual(['print']);
    expect(kit.dropped('labels').map((job) => job.name)).toEqual(['gift-note']);
  });

  it('should deliver each job of a flow to its queue, children first, after the commit', async () => {
    const processed: string[] = [];
    kit.process('shipments', (job) => {
      processed.push(`${job.name} ${job.id}`);
    });
    const ids = await shipping.shipFlow('o-4');
    expect(kit.jobs('labels')).toEqual([
      {
        id: ids.children![0].id,
        name: 'print',
        data: { order: 'o-4' },
        opts: { jobId: ids.children![0].id },
      },
    ]);
    expect(processed).toEqual([`ship ${ids.id}`]);
    kit.assertNoFailures();
  });
});
