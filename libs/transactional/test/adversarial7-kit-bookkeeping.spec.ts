/**
 * adversarial7 (kit bookkeeping): cases the kit-vs-production model
 * (adversarial7-kit-model.spec.ts) found or leaves out, each run against the testing kit and
 * against the real library (Postgres + Redis), with the same code.
 *
 * README "Testing kit": the kit is "built from the real runner, `TransactionHost` and
 * `TransactionAwareQueue` over an in-memory transaction driver and in-memory queues, so commit,
 * rollback and savepoint semantics are production's"; `deferred(queue)` is "jobs waiting for a
 * commit", `dropped(queue)` "dropped by rollbacks". README "Queues": a job the queue library
 * would refuse is "refused at `add()`, inside the transaction (a `TransactionalError`; the
 * caller may roll back or leave the job out)".
 */
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { LIB_QUEUE } from './support/queue-kind';

const QUEUE = uniqueName('a7-book');

function describeError(error: unknown): string {
  return error instanceof Error
    ? `${error.constructor.name}: ${error.message}`
    : String(error);
}

/** A job BOTH the data check and the id/option check of the lane's adapter refuse. */
const DOUBLY_REFUSED: Record<string, unknown> =
  LIB_QUEUE === 'bullmq'
    ? { jobId: '42' }
    : { repeat: { cron: 'not a cron expression' } };

describe(`adversarial7: testing kit (${LIB_QUEUE}) bookkeeping of refused jobs`, () => {
  let app: INestApplication;
  let prodHost: TransactionHost;
  let prodQueue: TransactionAwareQueue<any, any>;
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let kitHost: TransactionHost;
  let kitQueue: TransactionAwareQueue<any, any>;

  beforeAll(async () => {
    app = await createLibApp({ queues: [{ name: QUEUE }], listen: false });
    prodHost = app.get(TransactionHost);
    prodQueue = app.get(getTransactionAwareQueueToken(QUEUE), {
      strict: false,
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: LIB_QUEUE,
          queues: [QUEUE],
        }),
      ],
    }).compile();
    await moduleRef.init();
    kit = moduleRef.get(TransactionalTestingKit);
    kitHost = moduleRef.get(TransactionHost);
    kitQueue = moduleRef.get(getTransactionAwareQueueToken(QUEUE));
  });

  afterEach(() => moduleRef.close());

  /** Adds a job with `data` and `opts` in a transaction, catches the refusal, then commits or rolls back. */
  async function refusedThen(
    host: TransactionHost,
    queue: TransactionAwareQueue<any, any>,
    data: unknown,
    opts: Record<string, unknown>,
    end: 'commit' | 'rollback',
  ) {
    let refusal = 'resolved';
    await host
      .withTransaction(async () => {
        refusal = await queue.add('refused', data, opts as any).then(
          () => 'resolved',
          (error: unknown) => describeError(error),
        );
        if (end === 'rollback') throw new Error('rolled back by the caller');
      })
      .catch(() => undefined);
    return refusal;
  }

  it.each(['commit', 'rollback'] as const)(
    'a job refused at add() is neither deferred nor dropped in the kit (caller catches, then %s)',
    async (end) => {
      const prodBefore = { ...prodQueue.stats };
      const prodRefusal = await refusedThen(
        prodHost,
        prodQueue,
        { amount: BigInt(10) },
        {},
        end,
      );
      const kitRefusal = await refusedThen(
        kitHost,
        kitQueue,
        { amount: BigInt(10) },
        {},
        end,
      );
      // NOTE: the wording is compared by the next cases; here, that both refuse.
      expect(kitRefusal.split(':')[0]).toEqual(prodRefusal.split(':')[0]);
      expect(prodRefusal).toMatch(/^TransactionalError/);
      // NOTE: production deferred nothing, hence dropped nothing.
      expect({
        deferred: prodQueue.stats.deferred - prodBefore.deferred,
        dropped:
          prodQueue.stats.droppedOnRollback - prodBefore.droppedOnRollback,
      }).toEqual({ deferred: 0, dropped: 0 });
      // README: deferred() = "jobs waiting for a commit"; dropped() = "dropped by rollbacks".
      // A refused job was never added: once the transaction has ended neither may list it.
      expect({
        deferred: kit.deferred(QUEUE),
        dropped: kit.dropped(QUEUE),
        jobs: kit.jobs(QUEUE),
      }).toEqual({ deferred: [], dropped: [], jobs: [] });
    },
  );

  it('an addBulk() refused for one bad job leaves nothing deferred or dropped in the kit', async () => {
    const bulk = (queue: TransactionAwareQueue<any, any>) =>
      queue.addBulk([
        { name: 'good', data: { ok: true } },
        { name: 'bad', data: { amount: BigInt(1) } },
      ]);
    let prodOutcome = '';
    await prodHost.withTransaction(async () => {
      prodOutcome = await bulk(prodQueue).then(() => 'resolved', describeError);
    });
    let kitOutcome = '';
    await kitHost.withTransaction(async () => {
      kitOutcome = await bulk(kitQueue).then(() => 'resolved', describeError);
    });
    expect(kitOutcome.split(':')[0]).toEqual(prodOutcome.split(':')[0]);
    expect({
      deferred: kit.deferred(QUEUE).map((job) => job.name),
      dropped: kit.dropped(QUEUE).map((job) => job.name),
      jobs: kit.jobs(QUEUE).map((job) => job.name),
    }).toEqual({ deferred: [], dropped: [], jobs: [] });
  });

  it('a jobId added again by a later transaction leaves nothing deferred in the kit once both committed', async () => {
    // README "Queues": "The same jobId twice (in one transaction or two ...) makes one job
    // while Bull holds it". Production: one job in Redis, nothing waits for a commit.
    const twice = async (
      host: TransactionHost,
      queue: TransactionAwareQueue<any, any>,
    ) => {
      for (const n of [1, 2]) {
        await host.withTransaction(async () => {
          await queue.add('idempotent', { n }, { jobId: 'same-key' });
        });
      }
    };
    await (prodQueue.queue as any).obliterate({ force: true });
    await twice(prodHost, prodQueue);
    const inRedis = await (prodQueue.queue as any).getJobs([
      'waiting',
      'delayed',
      'paused',
      'active',
      'completed',
      'failed',
    ]);
    await twice(kitHost, kitQueue);
    expect({
      jobs: kit.jobs(QUEUE).map((job) => job.data),
      deferred: kit.deferred(QUEUE).map((job) => job.data),
    }).toEqual({
      jobs: inRedis.map((job: { data: unknown }) => job.data),
      deferred: [],
    });
  });

  it('a job with data JSON cannot write gets the same refusal (class and message) from the kit as in production', async () => {
    const data = { amount: BigInt(10) };
    const prod = await refusedThen(prodHost, prodQueue, data, {}, 'commit');
    const inKit = await refusedThen(kitHost, kitQueue, data, {}, 'commit');
    expect(prod).toMatch(/^TransactionalError/);
    expect(inKit).toEqual(prod);
  });

  it('a job with bad data and a bad id/option gets the same refusal from the kit as in production', async () => {
    const data = { amount: BigInt(10) };
    const prod = await refusedThen(
      prodHost,
      prodQueue,
      data,
      DOUBLY_REFUSED,
      'commit',
    );
    const inKit = await refusedThen(
      kitHost,
      kitQueue,
      data,
      DOUBLY_REFUSED,
      'commit',
    );
    expect(prod).toMatch(/^TransactionalError/);
    expect(inKit).toEqual(prod);
  });

  it.each([
    ['a BigInt in the data', { amount: BigInt(10) }, {}],
    ...(LIB_QUEUE === 'bullmq'
      ? [['an integer-looking jobId', { ok: true }, { jobId: '42' }] as const]
      : []),
  ] as [string, unknown, Record<string, unknown>][])(
    'the plain queue (queue.queue.add) refuses %s in the kit as in production',
    async (_what, data, opts) => {
      const plainAdd = (queue: TransactionAwareQueue<any, any>) =>
        Promise.resolve()
          .then(() => (queue.queue as any).add('plain', data, opts))
          .then(
            () => 'resolved',
            (error: unknown) =>
              error instanceof Error ? error.constructor.name : String(error),
          );
      const prod = await plainAdd(prodQueue);
      const inKit = await plainAdd(kitQueue);
      expect({ outcome: inKit, jobs: kit.jobs(QUEUE).length }).toEqual({
        outcome: prod,
        jobs: prod === 'resolved' ? 1 : 0,
      });
    },
  );
});
