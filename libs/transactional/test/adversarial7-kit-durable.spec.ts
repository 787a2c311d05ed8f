/**
 * adversarial7 (kit, durable jobs): the same code run on the testing kit and on the real library
 * (Postgres outbox + Redis). README "Durable mode": `registerQueue({ name, durable: true })` or
 * `add(data, { durable: true })` makes a job durable; README "Testing kit": the kit "stands in
 * for `TransactionalModule` in unit tests", providing "the same tokens, built from the real
 * runner, `TransactionHost` and `TransactionAwareQueue`", and `TestingQueueOptions` takes every
 * `registerQueue` option (`durable` included). Nothing says the kit refuses durable jobs: a
 * service whose queue is durable, or that passes `durable: true`, must be unit-testable with the
 * kit and see there what production does (deferred to the commit, dropped on rollback).
 */
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import {
  getTransactionAwareQueueToken,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { LIB_QUEUE } from './support/queue-kind';

const DURABLE = uniqueName('a7-dur');
const PLAIN = uniqueName('a7-pl');
const TABLE = 'tx_spec_a7_h4_outbox';

interface Side {
  host: TransactionHost;
  durable: TransactionAwareQueue<any, any>;
  plain: TransactionAwareQueue<any, any>;
  /** Names of the jobs each queue holds. */
  jobs(): Promise<{ durable: string[]; plain: string[] }>;
}

type Case = (side: Side) => Promise<Record<string, string>>;

const settle = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: unknown) =>
      `err ${error instanceof Error ? error.constructor.name : String(error)}`,
  );

const CASES: [string, Case][] = [
  [
    'a durable queue: add() in a transaction that commits',
    async ({ host, durable }) => {
      const out: Record<string, string> = {};
      out.root = await settle(
        host.withTransaction(async () => {
          out.add = await settle(durable.add('committed', { n: 1 }));
        }),
      );
      return out;
    },
  ],
  [
    'a durable queue: a NESTED scope rolls back, the transaction commits',
    async ({ host, durable }) => {
      const out: Record<string, string> = {};
      out.root = await settle(
        host.withTransaction(async () => {
          out.kept = await settle(durable.add('kept', { n: 1 }));
          out.nested = await settle(
            host.withTransaction(
              async () => {
                out.dropped = await settle(durable.add('dropped', { n: 2 }));
                throw new Error('savepoint rolled back');
              },
              { propagation: Propagation.Nested },
            ),
          );
        }),
      );
      return out;
    },
  ],
  [
    'a plain queue: add(name, data, { durable: true }) in a transaction that commits',
    async ({ host, plain }) => {
      const out: Record<string, string> = {};
      out.root = await settle(
        host.withTransaction(async () => {
          out.add = await settle(
            plain.add('per-job', { n: 1 }, { durable: true } as any),
          );
        }),
      );
      return out;
    },
  ],
  [
    'a durable queue: add() in a transaction that rolls back',
    async ({ host, durable }) => {
      const out: Record<string, string> = {};
      out.root = await settle(
        host.withTransaction(async () => {
          out.add = await settle(durable.add('rolled-back', { n: 1 }));
          throw new Error('rolled back');
        }),
      );
      return out;
    },
  ],
];

describe(`adversarial7: testing kit (${LIB_QUEUE}) and durable jobs`, () => {
  let app: INestApplication;
  let real: Side;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [{ name: DURABLE, durable: true }, { name: PLAIN }],
      listen: false,
      options: {
        outbox: { tableName: TABLE, relay: { enabled: false } },
      },
    });
    const queue = (name: string) =>
      app.get(getTransactionAwareQueueToken(name), { strict: false });
    const names = async (q: TransactionAwareQueue<any, any>) =>
      (
        await (q.queue as any).getJobs([
          'waiting',
          'delayed',
          'paused',
          'active',
          'completed',
          'failed',
        ])
      )
        .map((job: { name: string }) => job.name)
        .sort();
    real = {
      host: app.get(TransactionHost),
      durable: queue(DURABLE),
      plain: queue(PLAIN),
      jobs: async () => ({
        durable: await names(real.durable),
        plain: await names(real.plain),
      }),
    };
  });

  afterAll(() => closeLibApp(app, [DURABLE, PLAIN]));

  let moduleRef: TestingModule;
  let inKit: Side;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: LIB_QUEUE,
          queues: [{ name: DURABLE, durable: true }, PLAIN],
        }),
      ],
    }).compile();
    await moduleRef.init();
    const kit = moduleRef.get(TransactionalTestingKit);
    inKit = {
      host: moduleRef.get(TransactionHost),
      durable: moduleRef.get(getTransactionAwareQueueToken(DURABLE)),
      plain: moduleRef.get(getTransactionAwareQueueToken(PLAIN)),
      jobs: async () => ({
        durable: kit
          .jobs(DURABLE)
          .map((job) => job.name)
          .sort(),
        plain: kit
          .jobs(PLAIN)
          .map((job) => job.name)
          .sort(),
      }),
    };
    for (const q of [real.durable, real.plain]) {
      await (q.queue as any).obliterate({ force: true });
    }
  });

  afterEach(() => moduleRef.close());

  it.each(CASES)('%s: the kit does what production does', async (_, run) => {
    const prod = { calls: await run(real), jobs: await real.jobs() };
    const kit = { calls: await run(inKit), jobs: await inKit.jobs() };
    expect(kit).toEqual(prod);
  });
});
