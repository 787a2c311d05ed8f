import { InjectQueue } from '@nestjs/bull';
import { Controller, INestApplication, Injectable, Post } from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  NoTransactionError,
  PlainQueueInTransactionError,
  PlainQueuePolicy,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import { describeBullOnly } from './support/queue-kind';

/** Used as a plain Bull queue (injected with @InjectQueue). */
const PLAIN = uniqueName('detector-plain');
/** TransactionAwareQueue with the default whenNoTransaction: 'enqueue'. */
const AWARE = uniqueName('detector-aware');
/** TransactionAwareQueue with whenNoTransaction: 'warn'. */
const WARNS = uniqueName('detector-warns');
/** TransactionAwareQueue with whenNoTransaction: 'throw'. */
const THROWS = uniqueName('detector-throws');
const QUEUES = [PLAIN, AWARE, WARNS, THROWS];

type Payload = { label: string };

@Injectable()
class Producer {
  constructor(
    readonly host: TransactionHost,
    @InjectQueue(PLAIN) readonly plain: Queue<Payload>,
    @InjectTransactionAwareQueue(AWARE)
    readonly aware: TransactionAwareQueue<Payload>,
    @InjectTransactionAwareQueue(WARNS)
    readonly warns: TransactionAwareQueue<Payload>,
    @InjectTransactionAwareQueue(THROWS)
    readonly throws: TransactionAwareQueue<Payload>,
  ) {}

  /** Saves a row labelled `label`, then runs `fn`, in one transaction. */
  @Transactional()
  async inTransaction<T>(label: string, fn: () => Promise<T>): Promise<T> {
    await this.host.getRepository(Order).save({ label });
    return fn();
  }

  /** Runs `fn` with the caller's transaction suspended. */
  @Transactional({ propagation: Propagation.NotSupported })
  async suspended<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  /** Runs `fn` in a transaction of its own. */
  @Transactional({ propagation: Propagation.RequiresNew })
  async inNewTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** Labels of the rows the HTTP handler wrote, in order. */
const httpLabels: string[] = [];

@Controller('plain')
class PlainController {
  constructor(private readonly producer: Producer) {}

  /** The bug: a plain Bull add() inside a request's transaction. */
  @Post()
  @Transactional()
  async create() {
    const label = uniqueName('http-plain');
    httpLabels.push(label);
    await this.producer.host.getRepository(Order).save({ label });
    await this.producer.plain.add({ label });
    return { label };
  }
}

/** Boots the app with the given detector policy and a logger that records every line. */
async function bootWith(policy: PlainQueuePolicy | undefined) {
  const logger = new CapturingLogger();
  const app = await createLibApp({
    controllers: [PlainController],
    providers: [Producer],
    queues: [
      { name: PLAIN },
      { name: AWARE },
      { name: WARNS, whenNoTransaction: 'warn' },
      { name: THROWS, whenNoTransaction: 'throw' },
    ],
    options: policy ? { plainQueueInTransaction: policy } : {},
    logger,
  });
  return { app, logger, producer: app.get(Producer) };
}

/** Every warning and error the library wrote (contexts 'Transactional' and 'TransactionAwareQueue:*'). */
function libraryLines(logger: CapturingLogger) {
  return logger.entries
    .filter(
      (entry) =>
        (entry.level === 'warn' || entry.level === 'error') &&
        /^Transaction(al|AwareQueue:)/.test(entry.context ?? ''),
    )
    .map(({ level, context, message }) => ({ level, context, message }));
}

describeBullOnly(
  "it calls the plain Bull queue API; BullMQ's detector: bullmq-detector.spec.ts",
)('when a plain Bull queue is used inside a transaction', () => {
  describe("when plainQueueInTransaction is 'warn' (the default)", () => {
    let app: INestApplication;
    let logger: CapturingLogger;
    let producer: Producer;

    beforeAll(async () => {
      ({ app, logger, producer } = await bootWith(undefined));
    });

    afterAll(() => closeLibApp(app, QUEUES));

    beforeEach(async () => {
      logger.clear();
      for (const name of QUEUES) await bullQueue(app, name).empty();
    });

    it('should log one warning naming the queue and pointing to TransactionAwareQueue, and add the job (before the commit)', async () => {
      const label = uniqueName('warned');

      const reachedRedisBeforeCommit = await producer.inTransaction(
        label,
        async () => {
          const job = await producer.plain.add({ label });
          return inRedis(producer.plain, String(job.id));
        },
      );

      expect(reachedRedisBeforeCommit).toBe(true);
      expect(libraryLines(logger)).toEqual([
        {
          level: 'warn',
          context: 'Transactional',
          message: new PlainQueueInTransactionError(PLAIN, 'add').message,
        },
      ]);
      expect(libraryLines(logger)[0].message).toContain(`"${PLAIN}".add()`);
      expect(libraryLines(logger)[0].message).toContain(
        `@InjectTransactionAwareQueue('${PLAIN}')`,
      );
    });

    it('should warn about addBulk() too', async () => {
      await producer.inTransaction(uniqueName('warned-bulk'), () =>
        producer.plain.addBulk([
          { data: { label: 'a' } },
          { data: { label: 'b' } },
        ]),
      );

      expect(libraryLines(logger)).toEqual([
        {
          level: 'warn',
          context: 'Transactional',
          message: new PlainQueueInTransactionError(PLAIN, 'addBulk').message,
        },
      ]);
      expect(await bullQueue(app, PLAIN).getJobCounts()).toEqual({
        ...NO_JOBS,
        waiting: 2,
      });
    });

    it('should warn from an HTTP handler and still answer 201', async () => {
      const res = await request(await app.getUrl()).post('/plain');

      expect(res.status).toBe(201);
      expect(libraryLines(logger).map((line) => line.message)).toEqual([
        new PlainQueueInTransactionError(PLAIN, 'add').message,
      ]);
    });

    it('should not warn outside a transaction, nor inside a NOT_SUPPORTED scope that suspends one', async () => {
      await producer.plain.add({ label: 'outside' });
      await producer.inTransaction(uniqueName('suspended'), () =>
        producer.suspended(() => producer.plain.add({ label: 'suspended' })),
      );

      expect(libraryLines(logger)).toEqual([]);
      expect(await bullQueue(app, PLAIN).getJobCounts()).toEqual({
        ...NO_JOBS,
        waiting: 2,
      });
    });

    it("should never be triggered by TransactionAwareQueue's own flush, even one that runs while an outer transaction is open", async () => {
      let flushedInsideOuter = false;
      const ids = await producer.inTransaction(
        uniqueName('aware'),
        async () => {
          const id = await producer.aware.add({ label: 'aware' });
          const bulk = await producer.aware.addBulk([
            { data: { label: 'bulk-1' } },
            { data: { label: 'bulk-2' } },
          ]);
          // REQUIRES_NEW flushes on its own commit, with the outer still open.
          const inner = await producer.inNewTransaction(() =>
            producer.aware.add({ label: 'requires-new' }),
          );
          flushedInsideOuter = await inRedis(producer.aware.queue, inner);
          return [id, ...bulk, inner];
        },
      );

      expect(flushedInsideOuter).toBe(true);
      for (const id of ids) {
        expect(await inRedis(producer.aware.queue, id)).toBe(true);
      }
      expect(libraryLines(logger)).toEqual([]);
    });
  });

  describe("when plainQueueInTransaction is 'throw'", () => {
    let app: INestApplication;
    let logger: CapturingLogger;
    let producer: Producer;

    beforeAll(async () => {
      ({ app, logger, producer } = await bootWith('throw'));
    });

    afterAll(() => closeLibApp(app, QUEUES));

    beforeEach(async () => {
      logger.clear();
      for (const name of QUEUES) await bullQueue(app, name).empty();
    });

    const rowsLabelled = (label: string) =>
      app.get(DataSource).getRepository(Order).countBy({ label });

    it('should reject the add() with PlainQueueInTransactionError and add nothing (the transaction goes on if the caller catches it)', async () => {
      const label = uniqueName('caught');

      const error = await producer.inTransaction(label, () =>
        producer.plain.add({ label }).catch((e: unknown) => e),
      );

      expect(error).toBeInstanceOf(PlainQueueInTransactionError);
      expect((error as Error).message).toContain(`"${PLAIN}".add()`);
      expect(await bullQueue(app, PLAIN).getJobCounts()).toEqual(NO_JOBS);
      expect(await rowsLabelled(label)).toBe(1);
      expect(libraryLines(logger)).toEqual([]);
    });

    it('should roll the transaction back when the error propagates', async () => {
      const label = uniqueName('propagated');

      await expect(
        producer.inTransaction(label, () =>
          producer.plain.addBulk([{ data: { label } }]),
        ),
      ).rejects.toThrow(PlainQueueInTransactionError);

      expect(await rowsLabelled(label)).toBe(0);
      expect(await bullQueue(app, PLAIN).getJobCounts()).toEqual(NO_JOBS);
    });

    it('should answer 500 from an HTTP handler and roll back its row', async () => {
      httpLabels.length = 0;
      const res = await request(await app.getUrl()).post('/plain');

      expect(res.status).toBe(500);
      expect(await bullQueue(app, PLAIN).getJobCounts()).toEqual(NO_JOBS);
      expect(await rowsLabelled(httpLabels[httpLabels.length - 1])).toBe(0);
    });

    it('should let a plain add() outside a transaction and the TransactionAwareQueue flush through', async () => {
      const plainJob = await producer.plain.add({ label: 'outside' });
      const awareId = await producer.inTransaction(uniqueName('aware'), () =>
        producer.aware.add({ label: 'aware' }),
      );

      expect(await inRedis(producer.plain, String(plainJob.id))).toBe(true);
      expect(await inRedis(producer.aware.queue, awareId)).toBe(true);
      expect(libraryLines(logger)).toEqual([]);
    });
  });

  describe("when plainQueueInTransaction is 'off'", () => {
    let app: INestApplication;
    let logger: CapturingLogger;
    let producer: Producer;

    beforeAll(async () => {
      ({ app, logger, producer } = await bootWith('off'));
    });

    afterAll(() => closeLibApp(app, QUEUES));

    it('should neither warn nor throw', async () => {
      const job = await producer.inTransaction(uniqueName('off'), () =>
        producer.plain.add({ label: 'off' }),
      );

      expect(await inRedis(producer.plain, String(job.id))).toBe(true);
      expect(libraryLines(logger)).toEqual([]);
    });
  });
});

describe('when a TransactionAwareQueue is used outside a transaction', () => {
  let app: INestApplication;
  let logger: CapturingLogger;
  let producer: Producer;

  beforeAll(async () => {
    ({ app, logger, producer } = await bootWith(undefined));
  });

  afterAll(() => closeLibApp(app, QUEUES));

  beforeEach(async () => {
    logger.clear();
    for (const name of QUEUES) await bullQueue(app, name).empty();
  });

  describe("when its policy is 'warn'", () => {
    it('should enqueue at once and log a warning naming the queue and the job id', async () => {
      const id = await producer.warns.add({ label: 'outside' });

      expect(await inRedis(producer.warns.queue, id)).toBe(true);
      expect(libraryLines(logger)).toEqual([
        {
          level: 'warn',
          context: `TransactionAwareQueue:${WARNS}`,
          message: expect.stringContaining(`(job ids ${id})`),
        },
      ]);
      expect(libraryLines(logger)[0].message).toContain('@Transactional()');
    });

    it('should defer without a warning inside a transaction', async () => {
      const { id, queuedBeforeCommit } = await producer.inTransaction(
        uniqueName('warns-inside'),
        async () => {
          const jobId = await producer.warns.add({ label: 'inside' });
          return {
            id: jobId,
            queuedBeforeCommit: await inRedis(producer.warns.queue, jobId),
          };
        },
      );

      expect(queuedBeforeCommit).toBe(false);
      expect(await inRedis(producer.warns.queue, id)).toBe(true);
      expect(libraryLines(logger)).toEqual([]);
    });
  });

  describe("when its policy is 'throw'", () => {
    it('should reject with NoTransactionError naming the queue and enqueue nothing', async () => {
      const outcome = producer.throws.add({ label: 'outside' });

      await expect(outcome).rejects.toThrow(NoTransactionError);
      await expect(outcome).rejects.toThrow(`"${THROWS}"`);
      await expect(
        producer.throws.addBulk([{ data: { label: 'outside' } }]),
      ).rejects.toThrow(NoTransactionError);
      expect(await bullQueue(app, THROWS).getJobCounts()).toEqual(NO_JOBS);
      expect(producer.throws.stats).toEqual({
        deferred: 0,
        droppedOnRollback: 0,
        enqueued: 0,
        failed: 0,
        leftToRelay: 0,
        lateMarked: 0,
      });
    });

    it('should defer and enqueue after commit inside a transaction', async () => {
      const id = await producer.inTransaction(uniqueName('throws-inside'), () =>
        producer.throws.add({ label: 'inside' }),
      );

      expect(await inRedis(producer.throws.queue, id)).toBe(true);
      expect(libraryLines(logger)).toEqual([]);
    });
  });
});
