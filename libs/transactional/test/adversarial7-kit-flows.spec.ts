/**
 * adversarial7 (kit, BullMQ flows): the same flows added through `TransactionAwareFlowProducer`
 * on the testing kit and on the real library (Postgres + Redis). README "BullMQ / Testing kit":
 * "`flowProducers`: each job of a flow reaches the queue named by its queueName"; README
 * "Queues": "The same jobId twice (in one transaction or two, also concurrently) makes one job
 * while Bull holds it ... Job ids are unique per queue, as in Bull" (BullMQ: "re-enqueue of a job
 * id: ignored while BullMQ holds the job"). What `kit.jobs(queue)` lists must be what the queue
 * holds in production.
 */
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import {
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

const QUEUE = uniqueName('a7-flowq');
const FLOWS = uniqueName('a7-flows');

interface Side {
  host: TransactionHost;
  queue: TransactionAwareQueue<any, any>;
  flows: TransactionAwareFlowProducer;
  /** `name#id` of every job the queue holds, sorted. */
  held(): Promise<string[]>;
}

const flow = () => ({
  name: 'parent',
  queueName: QUEUE,
  data: { step: 'parent' },
  opts: { jobId: 'flow-parent' },
  children: [
    {
      name: 'child',
      queueName: QUEUE,
      data: { step: 'child' },
      opts: { jobId: 'flow-child' },
    },
  ],
});

describeBullMQOnly('adversarial7: testing kit flows and job ids', () => {
  let app: INestApplication;
  let real: Side;
  let moduleRef: TestingModule;
  let inKit: Side;

  beforeAll(async () => {
    app = await createLibApp({
      queues: [{ name: QUEUE }],
      listen: false,
      imports: [
        BullMQModule.registerFlowProducer({ name: FLOWS }),
        TransactionalModule.registerFlowProducer({ name: FLOWS }),
      ],
    });
    const queue: TransactionAwareQueue<any, any> = app.get(
      getTransactionAwareQueueToken(QUEUE),
      { strict: false },
    );
    real = {
      host: app.get(TransactionHost),
      queue,
      flows: app.get(getTransactionAwareFlowProducerToken(FLOWS), {
        strict: false,
      }),
      held: async () =>
        (
          await (queue.queue as any).getJobs([
            'waiting',
            'delayed',
            'prioritized',
            'waiting-children',
            'paused',
            'active',
            'completed',
            'failed',
          ])
        )
          .map((job: { name: string; id: string }) => `${job.name}#${job.id}`)
          .sort(),
    };
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(async () => {
    await (real.queue.queue as any).obliterate({ force: true });
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: 'bullmq',
          queues: [QUEUE],
          flowProducers: [FLOWS],
        }),
      ],
    }).compile();
    await moduleRef.init();
    const kit = moduleRef.get(TransactionalTestingKit);
    inKit = {
      host: moduleRef.get(TransactionHost),
      queue: moduleRef.get(getTransactionAwareQueueToken(QUEUE)),
      flows: moduleRef.get(getTransactionAwareFlowProducerToken(FLOWS)),
      held: async () =>
        kit
          .jobs(QUEUE)
          .map((job) => `${job.name}#${job.id}`)
          .sort(),
    };
  });

  afterEach(() => moduleRef.close());

  it('the same flow (same job ids) added by two transactions: the queue holds each job once', async () => {
    const run = async (side: Side) => {
      for (let i = 0; i < 2; i++) {
        await side.host.withTransaction(async () => {
          await side.flows.add(flow());
        });
      }
      return side.held();
    };
    const prod = await run(real);
    expect(prod).toEqual(['child#flow-child', 'parent#flow-parent']);
    expect(await run(inKit)).toEqual(prod);
  });

  it('a flow child whose jobId the queue already holds: the queue keeps one job', async () => {
    const run = async (side: Side) => {
      await side.host.withTransaction(async () => {
        await side.queue.add('single', { step: 'single' }, {
          jobId: 'flow-child',
        } as any);
      });
      await side.host.withTransaction(async () => {
        await side.flows.add(flow());
      });
      return side.held();
    };
    const prod = await run(real);
    expect(await run(inKit)).toEqual(prod);
  });
});
