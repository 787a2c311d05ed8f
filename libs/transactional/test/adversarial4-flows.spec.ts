import { BullModule } from '@nestjs/bullmq';
import { INestApplication, Injectable } from '@nestjs/common';
import { FlowProducer, Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import {
  FlowJobIds,
  InjectTransactionAwareFlowProducer,
  Transactional,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { Order } from './support/order.entity';
import { closeLibApp, createLibApp } from './support/lib-app';
import { watchProcessFailures } from './support/process-failures';
import { describeBullMQOnly } from './support/queue-kind';

/**
 * adversarial4: a flow added in a transaction that commits must reach Redis ("a job exists if
 * and only if its transaction committed"). TransactionAwareQueue.add() refuses, inside the
 * transaction, what BullMQ would refuse after the commit (README "Queues"); a flow's jobs go
 * through the same BullMQ checks (Job.validateOptions, FlowProducer.validateFlowJobs,
 * JSON.stringify) when the flow reaches Redis. Either the add() rejects in the transaction, or
 * every job of the flow exists after the commit.
 */
const PARENTS = uniqueName('a4-flow-parents');
const CHILDREN = uniqueName('a4-flow-children');
const FLOWS = uniqueName('a4-flows');

@Injectable()
class Shipping {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareFlowProducer(FLOWS)
    readonly flows: TransactionAwareFlowProducer,
  ) {}

  /** Writes a row, adds the flow (its rejection caught), commits. */
  @Transactional()
  async place(label: string, flow: any) {
    await this.tx.getRepository(Order).save({ label });
    try {
      return { ids: await this.flows.add(flow) };
    } catch (error) {
      return { error };
    }
  }
}

function allIds(ids: FlowJobIds): string[] {
  return [ids.id, ...(ids.children ?? []).flatMap(allIds)];
}

const child = (label: string, opts?: Record<string, unknown>, data?: any) => ({
  name: 'invoice',
  queueName: CHILDREN,
  data: data ?? { label },
  ...(opts ? { opts } : {}),
});

/** Flows whose jobs BullMQ refuses when they reach Redis. */
const REFUSED: [string, (label: string) => any][] = [
  [
    'a child with a float priority',
    (label) => ({
      name: 'ship',
      queueName: PARENTS,
      data: { label },
      children: [child(label, { priority: 1.5 })],
    }),
  ],
  [
    'a child with a backoff jitter above 1',
    (label) => ({
      name: 'ship',
      queueName: PARENTS,
      data: { label },
      children: [
        child(label, {
          attempts: 2,
          backoff: { type: 'fixed', delay: 10, jitter: 2 },
        }),
      ],
    }),
  ],
  [
    'a child with deduplication (BullMQ: not with a parent)',
    (label) => ({
      name: 'ship',
      queueName: PARENTS,
      data: { label },
      children: [child(label, { deduplication: { id: `d-${label}` } })],
    }),
  ],
  [
    'a parent with deduplication and children',
    (label) => ({
      name: 'ship',
      queueName: PARENTS,
      data: { label },
      opts: { deduplication: { id: `d-${label}` } },
      children: [child(label)],
    }),
  ],
  [
    'a child whose data JSON.stringify cannot write (BigInt)',
    (label) => ({
      name: 'ship',
      queueName: PARENTS,
      data: { label },
      children: [child(label, undefined, { label, amount: BigInt(7) })],
    }),
  ],
];

describeBullMQOnly(
  'adversarial4: flows BullMQ refuses after the commit',
  () => {
    const failures = watchProcessFailures();
    let app: INestApplication;
    let shipping: Shipping;
    let parents: Queue;
    let children: Queue;

    beforeAll(async () => {
      app = await createLibApp({
        providers: [Shipping],
        queues: [{ name: PARENTS }, { name: CHILDREN }],
        imports: [
          BullModule.registerFlowProducer({ name: FLOWS }),
          TransactionalModule.registerFlowProducer({ name: FLOWS }),
        ],
        listen: false,
      });
      shipping = app.get(Shipping);
      const connection = (app.get(`BullFlowProducer_${FLOWS}`) as FlowProducer)
        .opts.connection;
      parents = new Queue(PARENTS, { connection });
      children = new Queue(CHILDREN, { connection });
    });

    afterAll(async () => {
      await parents?.close();
      await children?.close();
      await closeLibApp(app, [PARENTS, CHILDREN]);
      failures.dispose();
    });

    it.each(REFUSED)(
      '%s: add() rejects inside the transaction, or every job of the committed flow is in Redis',
      async (_what, flowOf) => {
        const label = uniqueName('a4-flow');
        const failedBefore = shipping.flows.stats.failed;
        const outcome = await shipping.place(label, flowOf(label));
        // the transaction committed: its row is there
        const [{ n }] = await dbQuery(
          app.get(DataSource),
          `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
          [label],
        );
        expect(Number(n)).toBe(1);
        await new Promise((resolve) => setTimeout(resolve, 100));
        if ('ids' in outcome && outcome.ids) {
          const ids = allIds(outcome.ids);
          const present = await Promise.all(
            ids.map(async (id) =>
              Boolean(
                (await parents.getJob(id)) ?? (await children.getJob(id)),
              ),
            ),
          );
          // the flow was accepted in a transaction that committed: it must exist
          expect({
            accepted: true,
            present,
            failedAfterCommit: shipping.flows.stats.failed - failedBefore,
          }).toEqual({
            accepted: true,
            present: ids.map(() => true),
            failedAfterCommit: 0,
          });
        } else {
          expect(String(outcome.error)).toMatch(/TransactionalError|refuse/);
        }
      },
    );

    it('no unhandled rejection or uncaught exception', () => {
      expect(failures.unhandledRejections).toEqual([]);
      expect(failures.uncaughtExceptions).toEqual([]);
    });
  },
);
