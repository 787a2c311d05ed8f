import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Propagation,
  Transactional,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '@app/transactional';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  NO_JOBS,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';

const DURABLE = uniqueName('jobid-durable');
const OTHER_DURABLE = uniqueName('jobid-other');
const PLAIN = uniqueName('jobid-plain');
const QUEUES = [DURABLE, OTHER_DURABLE, PLAIN];
const TABLE = 'tx_spec_outbox_job_id';

type Payload = { n: number };

@Injectable()
class Tx {
  constructor(readonly host: TransactionHost) {}

  /** Runs `fn` in a transaction, then saves an order in it (proof the transaction is usable). */
  @Transactional()
  async run<T>(fn: () => Promise<T>, label = uniqueName('order')) {
    const result = await fn();
    await this.host.getRepository(Order).save({ label });
    return result;
  }

  @Transactional({ propagation: Propagation.Nested })
  async nested<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('when a durable job is added with a jobId the outbox holds already', () => {
  let app: INestApplication;
  let tx: Tx;
  let outbox: TransactionalOutbox;
  const aware = (name: string): TransactionAwareQueue<Payload> =>
    app.get(getTransactionAwareQueueToken(name));
  const bull = (name: string): Queue<Payload> => bullQueue(app, name);
  const rows = (jobId: string) =>
    app
      .get(DataSource)
      .query(`SELECT queue, data FROM ${TABLE} WHERE id = $1 ORDER BY queue`, [
        jobId,
      ]) as Promise<{ queue: string; data: Payload }[]>;
  const orderSaved = (label: string) =>
    app.get(DataSource).getRepository(Order).existsBy({ label });
  const allMarked = () =>
    waitFor(
      async () => (await outbox.stats()).pending === 0,
      'the fast path to mark every row',
    );

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Tx],
      queues: [
        { name: DURABLE, durable: true },
        { name: OTHER_DURABLE, durable: true },
        { name: PLAIN },
      ],
      options: {
        outbox: {
          tableName: TABLE,
          relay: { enabled: false },
          // NOTE: long enough that a row is still pending when the next add of its jobId comes.
          markBatchDelayMs: 500,
        },
      },
      listen: false,
    });
    tx = app.get(Tx);
    outbox = app.get(TransactionalOutbox);
  });

  afterAll(() => closeLibApp(app, QUEUES));

  beforeEach(async () => {
    for (const name of QUEUES) await bull(name).obliterate({ force: true });
  });

  it('should keep the first of two adds in one transaction, and commit the transaction', async () => {
    const jobId = uniqueName('same-tx');
    const label = uniqueName('order');

    const ids = await tx.run(
      async () => [
        await aware(DURABLE).add({ n: 1 }, { jobId }),
        await aware(DURABLE).add({ n: 2 }, { jobId }),
        ...(await aware(DURABLE).addBulk([
          { data: { n: 3 }, opts: { jobId } },
          { data: { n: 4 }, opts: { jobId } },
        ])),
      ],
      label,
    );

    expect(ids).toEqual([jobId, jobId, jobId, jobId]);
    expect(await orderSaved(label)).toBe(true);
    expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 1 } }]);
    expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 1 });
    expect(await bull(DURABLE).getJobCounts()).toEqual({
      ...NO_JOBS,
      waiting: 1,
    });
    await allMarked();
  });

  it('should keep the first of two transactions, and commit the second one too', async () => {
    const jobId = uniqueName('two-tx');
    const label = uniqueName('order');

    await tx.run(() => aware(DURABLE).add({ n: 1 }, { jobId }));
    const second = await tx.run(
      () => aware(DURABLE).add({ n: 2 }, { jobId }),
      label,
    );

    expect(second).toBe(jobId);
    expect(await orderSaved(label)).toBe(true);
    expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 1 } }]);
    expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 1 });
    expect(await bull(DURABLE).getJobCounts()).toEqual({
      ...NO_JOBS,
      waiting: 1,
    });
    await allMarked();
  });

  it('should keep the first data when the first job is left to the relay (its fast path failed)', async () => {
    const jobId = uniqueName('relayed');
    const queue = bull(DURABLE);
    const add = queue.add;
    queue.add = (async () => {
      throw new Error('simulated Redis outage');
    }) as any;
    try {
      await tx.run(() => aware(DURABLE).add({ n: 1 }, { jobId }));
    } finally {
      queue.add = add;
    }
    await tx.run(() => aware(DURABLE).add({ n: 2 }, { jobId }));
    expect(await queue.getJob(jobId)).toBeNull();
    await app
      .get(DataSource)
      .query(
        `UPDATE ${TABLE} SET available_at = clock_timestamp() WHERE dispatched_at IS NULL`,
      );

    expect(await outbox.relayOnce()).toBe(1);

    expect((await queue.getJob(jobId))?.data).toEqual({ n: 1 });
    expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 1 } }]);
  });

  describe('when two transactions add it concurrently', () => {
    it('should keep the one that commits first and commit both', async () => {
      const jobId = uniqueName('concurrent');
      const second = uniqueName('order');
      const firstAdded = gate();
      const release = gate();

      const first = tx.run(async () => {
        await aware(DURABLE).add({ n: 1 }, { jobId });
        firstAdded.open();
        await release.opened;
      });
      await firstAdded.opened;
      // Its INSERT waits for the first transaction's row lock.
      const other = tx.run(
        () => aware(DURABLE).add({ n: 2 }, { jobId }),
        second,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      release.open();

      await expect(first).resolves.toBeUndefined();
      await expect(other).resolves.toBe(jobId);
      expect(await orderSaved(second)).toBe(true);
      expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 1 } }]);
      await waitFor(
        async () => (await bull(DURABLE).getJob(jobId)) !== null,
        'the job',
      );
      expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 1 });
      expect(await bull(DURABLE).getJobCounts()).toEqual({
        ...NO_JOBS,
        waiting: 1,
      });
      await allMarked();
    });

    it('should keep the second one when the first rolls back', async () => {
      const jobId = uniqueName('concurrent-rollback');
      const firstAdded = gate();
      const release = gate();

      const first = tx.run(async () => {
        await aware(DURABLE).add({ n: 1 }, { jobId });
        firstAdded.open();
        await release.opened;
        throw new Error('first rolls back');
      });
      await firstAdded.opened;
      const other = tx.run(() => aware(DURABLE).add({ n: 2 }, { jobId }));
      await new Promise((resolve) => setTimeout(resolve, 200));
      release.open();

      await expect(first).rejects.toThrow('first rolls back');
      await expect(other).resolves.toBe(jobId);
      expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 2 } }]);
      await waitFor(
        async () => (await bull(DURABLE).getJob(jobId)) !== null,
        'the job',
      );
      expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 2 });
      await allMarked();
    });
  });

  it('should keep a job of another queue with the same jobId (a job id is unique per queue)', async () => {
    const jobId = uniqueName('two-queues');

    await tx.run(async () => {
      await aware(DURABLE).add({ n: 1 }, { jobId });
      await aware(OTHER_DURABLE).add({ n: 2 }, { jobId });
    });

    expect(await rows(jobId)).toEqual(
      [
        { queue: DURABLE, data: { n: 1 } },
        { queue: OTHER_DURABLE, data: { n: 2 } },
      ].sort((a, b) => a.queue.localeCompare(b.queue)),
    );
    expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 1 });
    expect((await bull(OTHER_DURABLE).getJob(jobId))?.data).toEqual({ n: 2 });
    await allMarked();
  });

  it('should leave the job Bull holds alone when its row was dispatched already, as a plain queue does', async () => {
    const results: Record<string, unknown> = {};
    for (const name of [PLAIN, DURABLE]) {
      const jobId = uniqueName('held');
      await tx.run(() => aware(name).add({ n: 1 }, { jobId }));
      await allMarked();
      await tx.run(() => aware(name).add({ n: 2 }, { jobId }));
      await allMarked();
      results[name] = [
        (await bull(name).getJob(jobId))?.data,
        (await bull(name).getJobCounts()).waiting,
      ];
    }

    expect(results).toEqual({
      [PLAIN]: [{ n: 1 }, 1],
      [DURABLE]: [{ n: 1 }, 1],
    });
  });

  it('should enqueue again, as a plain queue does, once Bull no longer holds the dispatched job', async () => {
    const results: Record<string, unknown> = {};
    for (const name of [PLAIN, DURABLE]) {
      const jobId = uniqueName('again');
      await tx.run(() => aware(name).add({ n: 1 }, { jobId }));
      await allMarked();
      // What removeOnComplete does once a worker has processed it.
      await (await bull(name).getJob(jobId))!.remove();
      await tx.run(() => aware(name).add({ n: 2 }, { jobId }));
      await waitFor(
        async () => (await bull(name).getJob(jobId)) !== null,
        'the second job',
      );
      results[name] = (await bull(name).getJob(jobId))?.data;
    }

    expect(results).toEqual({ [PLAIN]: { n: 2 }, [DURABLE]: { n: 2 } });
    await allMarked();
  });

  describe('when NESTED scopes roll back', () => {
    it('should let the outer scope add a jobId whose row a rolled-back savepoint dropped', async () => {
      const jobId = uniqueName('nested-dropped');

      await tx.run(async () => {
        await tx
          .nested(async () => {
            await aware(DURABLE).add({ n: 1 }, { jobId });
            throw new Error('inner fails');
          })
          .catch(() => undefined);
        await aware(DURABLE).add({ n: 2 }, { jobId });
      });

      expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 2 } }]);
      expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 2 });
      await allMarked();
    });

    it("should keep the outer scope's job when a savepoint that added the same jobId rolls back", async () => {
      const jobId = uniqueName('nested-kept');

      await tx.run(async () => {
        await aware(DURABLE).add({ n: 1 }, { jobId });
        await tx
          .nested(async () => {
            await aware(DURABLE).add({ n: 2 }, { jobId });
            throw new Error('inner fails');
          })
          .catch(() => undefined);
      });

      expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 1 } }]);
      expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 1 });
      await allMarked();
    });
  });
});
