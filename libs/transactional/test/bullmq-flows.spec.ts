import { BullModule } from '@nestjs/bullmq';
import { INestApplication, Injectable } from '@nestjs/common';
import { FlowProducer, Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import {
  FlowJobIds,
  InjectTransactionAwareFlowProducer,
  PlainQueueInTransactionError,
  Propagation,
  Transactional,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { bullQueue, closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

const PARENTS = uniqueName('flow-parents');
const CHILDREN = uniqueName('flow-children');
const FLOWS = uniqueName('flows');

const flowOf = (label: string, opts?: Record<string, unknown>) => ({
  name: 'assemble',
  queueName: PARENTS,
  data: { label },
  children: [
    { name: 'part', queueName: CHILDREN, data: { label, part: 1 }, opts },
    {
      name: 'part',
      queueName: CHILDREN,
      data: { label, part: 2 },
      children: [
        { name: 'screw', queueName: CHILDREN, data: { label, part: 3 } },
      ],
    },
  ],
});

@Injectable()
class Assembly {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareFlowProducer(FLOWS)
    readonly flows: TransactionAwareFlowProducer,
    readonly plain: FlowProducer,
  ) {}

  /** Writes a row and adds its flow; `seen` gets what Redis held before the commit. */
  @Transactional()
  async create(
    label: string,
    seen: { before?: boolean },
    opts?: Record<string, unknown>,
  ) {
    await this.tx.getRepository(Order).save({ label });
    const ids = await this.flows.add(flowOf(label, opts) as any);
    const parents = await new Queue(PARENTS, {
      connection: (this.plain as any).opts.connection,
    });
    seen.before = (await parents.getJob(ids.id)) !== undefined;
    await parents.close();
    return ids;
  }

  /** One flow in the transaction, another in a NESTED scope that fails. */
  @Transactional()
  async createWithFailingNested(label: string) {
    const kept = await this.flows.add(flowOf(`${label}-kept`) as any);
    let dropped: FlowJobIds | undefined;
    await this.tx
      .withTransaction(
        async () => {
          dropped = await this.flows.add(flowOf(`${label}-dropped`) as any);
          throw new Error('nested failure');
        },
        { propagation: Propagation.Nested },
      )
      .catch(() => undefined);
    return { kept, dropped: dropped! };
  }

  @Transactional()
  async failAfterAdding(label: string) {
    const ids = await this.flows.add(flowOf(label) as any);
    throw Object.assign(new Error('business rule'), { ids });
  }

  @Transactional()
  async plainAdd(label: string) {
    return this.plain.add(flowOf(label) as any);
  }
}

function allIds(ids: FlowJobIds): string[] {
  return [ids.id, ...(ids.children ?? []).flatMap(allIds)];
}

describeBullMQOnly('when a BullMQ flow is added in a transaction', () => {
  let app: INestApplication;
  let assembly: Assembly;
  let parents: Queue;
  let children: Queue;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [
        Assembly,
        {
          provide: FlowProducer,
          useFactory: (flows: FlowProducer) => flows,
          inject: [`BullFlowProducer_${FLOWS}`],
        },
      ],
      queues: [{ name: PARENTS }, { name: CHILDREN }],
      imports: [
        BullModule.registerFlowProducer({ name: FLOWS }),
        TransactionalModule.registerFlowProducer({ name: FLOWS }),
      ],
      options: { plainQueueInTransaction: 'throw' },
      listen: false,
    });
    assembly = app.get(Assembly);
    parents = bullQueue(app, PARENTS) as any;
    children = bullQueue(app, CHILDREN) as any;
  });

  afterAll(async () => {
    await closeLibApp(app, [PARENTS, CHILDREN]);
  });

  const rows = (label: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label });
  const exists = async (queue: Queue, id: string) =>
    (await queue.getJob(id)) != null;

  it('should enqueue the whole flow after the commit, with ids generated up front for every job', async () => {
    const label = uniqueName('flow');
    const seen: { before?: boolean } = {};
    const ids = await assembly.create(label, seen);

    expect(seen.before).toBe(false);
    expect(ids).toEqual({
      id: expect.any(String),
      name: 'assemble',
      queueName: PARENTS,
      children: [
        { id: expect.any(String), name: 'part', queueName: CHILDREN },
        {
          id: expect.any(String),
          name: 'part',
          queueName: CHILDREN,
          children: [
            { id: expect.any(String), name: 'screw', queueName: CHILDREN },
          ],
        },
      ],
    });
    expect(new Set(allIds(ids)).size).toBe(4);
    const parent = await parents.getJob(ids.id);
    expect(parent?.data).toEqual({ label });
    expect(await parents.getJobState(ids.id)).toBe('waiting-children');
    const [first, second] = ids.children!;
    const part = await children.getJob(first.id);
    expect(part?.parentKey).toBe(`bull:${PARENTS}:${ids.id}`);
    const screw = await children.getJob(second.children![0].id);
    expect(screw?.parentKey).toBe(`bull:${CHILDREN}:${second.id}`);
    expect(assembly.flows.stats).toMatchObject({ deferred: 1, enqueued: 1 });
  });

  it('should add no job of the flow when the transaction rolls back', async () => {
    const label = uniqueName('rolled-back');
    const error = await assembly.failAfterAdding(label).catch((e) => e);
    expect(error.message).toBe('business rule');
    for (const id of allIds(error.ids)) {
      expect(await exists(parents, id)).toBe(false);
      expect(await exists(children, id)).toBe(false);
    }
  });

  it('should drop the flow of a NESTED scope that rolls back and keep the outer one', async () => {
    const { kept, dropped } = await assembly.createWithFailingNested(
      uniqueName('nested'),
    );
    expect(await exists(parents, kept.id)).toBe(true);
    expect(await exists(parents, dropped.id)).toBe(false);
    for (const child of dropped.children!) {
      expect(await exists(children, child.id)).toBe(false);
    }
  });

  it('should let BullMQ ignore a re-add of a flow with the same custom ids', async () => {
    const jobId = uniqueName('part');
    const first = await assembly.create(uniqueName('a'), {}, { jobId });
    const again = await assembly.create(uniqueName('b'), {}, { jobId });
    expect(first.children![0].id).toBe(jobId);
    expect(again.children![0].id).toBe(jobId);
    expect((await children.getJob(jobId))?.parentKey).toBe(
      `bull:${PARENTS}:${first.id}`,
    );
  });

  it('should refuse a custom id BullMQ would refuse, inside the transaction', async () => {
    const label = uniqueName('bad-id');
    await expect(assembly.create(label, {}, { jobId: '12' })).rejects.toThrow(
      'job id "12" is an integer',
    );
    expect(await rows(label)).toBe(0);
  });

  it('should refuse durable flows, per job and at registration', async () => {
    const label = uniqueName('durable');
    await expect(assembly.create(label, {}, { durable: true })).rejects.toThrow(
      /durable mode is not supported for flows/,
    );
    expect(await rows(label)).toBe(0);
    expect(
      () =>
        new TransactionAwareFlowProducer(
          { name: 'x', durable: true } as any,
          () => assembly.plain,
        ),
    ).toThrow(/durable mode is not supported for flows/);
  });

  it("should reject a plain FlowProducer.add inside a transaction (policy 'throw')", async () => {
    const label = uniqueName('plain');
    await expect(assembly.plainAdd(label)).rejects.toThrow(
      PlainQueueInTransactionError,
    );
    await expect(assembly.plainAdd(label)).rejects.toThrow(
      `BullMQ FlowProducer "${PARENTS}".add() was called inside an active transaction`,
    );
  });
});
