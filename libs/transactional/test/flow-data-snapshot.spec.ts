/**
 * A BullMQ flow carries its jobs' data as it was at `add()`, as a queue's job does
 * (adversarial9-data-snapshot): the flow goes to Redis after the commit, and the caller may change
 * or reuse the objects of its tree meanwhile. BullMQ's own `FlowProducer.add` writes them to Redis
 * before it resolves.
 */
import { BullModule } from '@nestjs/bullmq';
import { INestApplication } from '@nestjs/common';
import { Queue } from 'bullmq';
import {
  getTransactionAwareFlowProducerToken,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import { bullQueue, closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

const PARENTS = uniqueName('fds-parents');
const CHILDREN = uniqueName('fds-children');
const FLOWS = uniqueName('fds-flows');

describeBullMQOnly('a flow added in a transaction', () => {
  let app: INestApplication;
  let host: TransactionHost;
  let flows: TransactionAwareFlowProducer;
  let parents: Queue;
  let children: Queue;

  beforeAll(async () => {
    app = await createLibApp({
      queues: [{ name: PARENTS }, { name: CHILDREN }],
      imports: [
        BullModule.registerFlowProducer({ name: FLOWS }),
        TransactionalModule.registerFlowProducer({ name: FLOWS }),
      ],
      listen: false,
    });
    host = app.get(TransactionHost);
    flows = app.get(getTransactionAwareFlowProducerToken(FLOWS));
    parents = bullQueue(app, PARENTS) as any;
    children = bullQueue(app, CHILDREN) as any;
  });

  afterAll(() => closeLibApp(app, [PARENTS, CHILDREN]));

  it('carries the data its nodes had at add(), not what the objects hold at the commit', async () => {
    const shared = { step: 0, tags: ['a'] };
    const added = await host.withTransaction(async () => {
      const first = await flows.add({
        name: 'assemble',
        queueName: PARENTS,
        data: shared,
        children: [{ name: 'part', queueName: CHILDREN, data: shared }],
      });
      shared.step = 1;
      shared.tags.push('b');
      const second = await flows.add({
        name: 'assemble',
        queueName: PARENTS,
        data: shared,
      });
      shared.step = 99;
      shared.tags.push('late');
      return { first, second };
    });
    const data = async (queue: Queue, id: string) =>
      (await queue.getJob(id))?.data;
    expect({
      first: await data(parents, added.first.id),
      child: await data(children, added.first.children![0].id),
      second: await data(parents, added.second.id),
    }).toEqual({
      first: { step: 0, tags: ['a'] },
      child: { step: 0, tags: ['a'] },
      second: { step: 1, tags: ['a', 'b'] },
    });
  });

  it('a node whose data becomes unserialisable after add() (a BigInt set before the commit): the committed flow still reaches Redis', async () => {
    const data: Record<string, unknown> = { n: 1 };
    const before = flows.stats.failed;
    const added = await host.withTransaction(async () => {
      const ids = await flows.add({ name: 'late', queueName: PARENTS, data });
      data.big = BigInt(1);
      return ids;
    });
    expect((await parents.getJob(added.id))?.data).toEqual({ n: 1 });
    expect(flows.stats.failed).toBe(before);
  });
});
