import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { itBullOnly } from './support/queue-kind';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';

const QUEUE = uniqueName('enqueue-id');
const UUID =
  /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Payload = { n: number };

/** Rejects with a clear message if `promise` has not settled within `ms` (a deadlock). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not settle within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

@Injectable()
class Jobs {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    readonly queue: TransactionAwareQueue<Payload>,
  ) {}

  /** Runs `fn` in a transaction. */
  @Transactional()
  async inTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

describe('when jobs are added through a TransactionAwareQueue', () => {
  let app: INestApplication;
  let jobs: Jobs;
  let bull: Queue<Payload>;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Jobs],
      queues: [{ name: QUEUE }],
      listen: false,
    });
    jobs = app.get(Jobs);
    bull = bullQueue(app, QUEUE);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(async () => {
    await bull.empty();
    expect(await bull.getJobCounts()).toEqual(NO_JOBS);
  });

  describe('when add() is awaited inside a transaction', () => {
    it('should resolve with the job id while the transaction is still open, and Bull should hold the job under that id after commit', async () => {
      const events: string[] = [];
      const id = await jobs.inTransaction(async () => {
        await jobs.host.afterCommit(() => events.push('committed'));
        const jobId = await within(
          jobs.queue.add({ n: 1 }),
          2_000,
          'add() inside the transaction',
        );
        events.push(
          `add resolved (transaction active: ${jobs.host.isActive}, job in Redis: ${await inRedis(bull, jobId)})`,
        );
        // The transaction is still usable after the awaited add().
        await jobs.host.getRepository(Order).save({ label: uniqueName('id') });
        events.push('row saved');
        return jobId;
      });

      expect(events).toEqual([
        'add resolved (transaction active: true, job in Redis: false)',
        'row saved',
        'committed',
      ]);
      expect(id).toMatch(UUID);
      const job = await bull.getJob(id);
      expect(job?.id).toBe(id);
      expect(job?.data).toEqual({ n: 1 });
    });

    it('should enqueue once when the same explicit jobId is added twice, in one transaction or two', async () => {
      const jobId = uniqueName('explicit');

      const first = await jobs.inTransaction(async () => [
        await jobs.queue.add({ n: 1 }, { jobId }),
        await jobs.queue.add({ n: 2 }, { jobId }),
      ]);
      const second = await jobs.inTransaction(() =>
        jobs.queue.add({ n: 3 }, { jobId }),
      );

      expect([...first, second]).toEqual([jobId, jobId, jobId]);
      expect(await bull.getJobCounts()).toEqual({ ...NO_JOBS, waiting: 1 });
      expect((await bull.getJob(jobId))?.data).toEqual({ n: 1 });
    });

    // NOTE: BullMQ takes string ids only; its refusal is specified in bullmq-job-ids.spec.ts.
    itBullOnly('BullMQ refuses a numeric jobId')(
      'should return a numeric jobId as the string Bull stores',
      async () => {
        const numericId = Date.now();

        const id = await jobs.inTransaction(() =>
          jobs.queue.add({ n: 1 }, { jobId: numericId }),
        );

        expect(id).toBe(String(numericId));
        expect((await bull.getJob(id))?.id).toBe(String(numericId));
      },
    );
  });

  describe('when addBulk() is awaited inside a transaction', () => {
    it('should return the ids in the order of the jobs, explicit ids kept, each id holding its own job after commit', async () => {
      const explicit = uniqueName('bulk-explicit');

      const ids = await jobs.inTransaction(async () => {
        const result = await jobs.queue.addBulk([
          { data: { n: 1 } },
          { data: { n: 2 }, opts: { jobId: explicit } },
          { data: { n: 3 } },
        ]);
        expect(await bull.getJobCounts()).toEqual(NO_JOBS);
        return result;
      });

      expect(ids).toHaveLength(3);
      expect(ids[0]).toMatch(UUID);
      expect(ids[1]).toBe(explicit);
      expect(ids[2]).toMatch(UUID);
      expect(new Set(ids).size).toBe(3);
      const stored = await Promise.all(ids.map((id) => bull.getJob(id)));
      expect(stored.map((job) => [job?.id, job?.data])).toEqual([
        [ids[0], { n: 1 }],
        [ids[1], { n: 2 }],
        [ids[2], { n: 3 }],
      ]);
    });
  });

  describe('when jobs are named or carry options', () => {
    it("should keep the names of named jobs, and give unnamed ones Bull's default name", async () => {
      const ids = await jobs.inTransaction(async () => [
        await jobs.queue.add('send-webhook', { n: 1 }),
        await jobs.queue.add({ n: 2 }),
        ...(await jobs.queue.addBulk([
          { name: 'bulk-named', data: { n: 3 } },
          { data: { n: 4 } },
        ])),
      ]);

      const stored = await Promise.all(ids.map((id) => bull.getJob(id)));
      expect(stored.map((job) => [job?.name, job?.data])).toEqual([
        ['send-webhook', { n: 1 }],
        ['__default__', { n: 2 }],
        ['bulk-named', { n: 3 }],
        ['__default__', { n: 4 }],
      ]);
    });

    it('should pass the other job options through to Bull', async () => {
      const id = await jobs.inTransaction(() =>
        jobs.queue.add('later', { n: 1 }, { delay: 60_000, attempts: 3 }),
      );

      const job = await bull.getJob(id);
      expect(job?.opts).toMatchObject({
        delay: 60_000,
        attempts: 3,
        jobId: id,
      });
      expect(await job?.getState()).toBe('delayed');
      expect(await bull.getJobCounts()).toEqual({ ...NO_JOBS, delayed: 1 });
    });
  });

  describe('when add() is called outside a transaction (whenNoTransaction: enqueue)', () => {
    it('should enqueue at once and resolve with the id Bull holds the job under', async () => {
      const id = await jobs.queue.add('now', { n: 1 });

      expect(id).toMatch(UUID);
      const job = await bull.getJob(id);
      expect([job?.id, job?.name, job?.data]).toEqual([id, 'now', { n: 1 }]);
    });
  });
});
