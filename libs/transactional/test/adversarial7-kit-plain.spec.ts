/**
 * adversarial7 (kit, plain queue in a transaction): README "Queues": "The bug this package
 * exists for, a plain Bull `queue.add()` inside a transaction ... is detected: ... logs a warning
 * naming the queue (`plainQueueInTransaction: 'warn'`, the default), rejects with
 * `PlainQueueInTransactionError` (`'throw'`)". README "Testing kit": the kit "stands in for
 * `TransactionalModule` in unit tests". An application configured with `'throw'` must be able to
 * see, in a unit test, that its service calls the plain queue (`queue.queue.add()`) inside a
 * transaction: production refuses the add, the kit must not report the job as enqueued.
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

const QUEUE = uniqueName('a7-plainq');

describe(`adversarial7: testing kit (${LIB_QUEUE}) and a plain queue add() in a transaction`, () => {
  let app: INestApplication;
  let moduleRef: TestingModule;

  beforeAll(async () => {
    app = await createLibApp({
      queues: [{ name: QUEUE }],
      listen: false,
      options: { plainQueueInTransaction: 'throw' },
    });
  });

  afterAll(async () => {
    await moduleRef?.close();
    await closeLibApp(app, [QUEUE]);
  });

  it("plainQueueInTransaction: 'throw' refuses queue.queue.add() in the kit as in production", async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: LIB_QUEUE,
          queues: [QUEUE],
          // NOTE: TransactionalModule.forRoot's option; the kit's forRoot has no way to take it.
          ...({ plainQueueInTransaction: 'throw' } as object),
        }),
      ],
    }).compile();
    await moduleRef.init();
    const kit = moduleRef.get(TransactionalTestingKit);
    const run = async (
      host: TransactionHost,
      queue: TransactionAwareQueue<any, any>,
    ) => {
      let outcome = '';
      await host.withTransaction(async () => {
        outcome = await Promise.resolve()
          .then(() => (queue.queue as any).add('plain', { n: 1 }))
          .then(
            () => 'resolved',
            (error: unknown) =>
              error instanceof Error ? error.constructor.name : String(error),
          );
      });
      return outcome;
    };
    const prod = await run(
      app.get(TransactionHost),
      app.get(getTransactionAwareQueueToken(QUEUE), { strict: false }),
    );
    const inKit = await run(
      moduleRef.get(TransactionHost),
      moduleRef.get(getTransactionAwareQueueToken(QUEUE)),
    );
    expect(prod).toBe('PlainQueueInTransactionError');
    expect({ outcome: inKit, jobs: kit.jobs(QUEUE).length }).toEqual({
      outcome: prod,
      jobs: 0,
    });
  });
});
