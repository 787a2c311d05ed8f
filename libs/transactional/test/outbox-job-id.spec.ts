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
} from '../src';
import { uniqueName } from './support/env';
import { LIB_QUEUE } from './support/queue-kind';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  NO_JOBS,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import {
  createOutboxTable,
  makeOutboxRowsEligible,
} from './support/outbox-table';
import { dbQuery } from './support/db';

const DURABLE = uniqueName('jobid-durable');
const OTHER_DURABLE = uniqueName('jobid-other');
const PLAIN = uniqueName('jobid-plain');
/** Durable, every job has the jobId of the queue's defaultJobOptions. */
const DEFAULT_ID = uniqueName('jobid-default');
const DEFAULT_JOB_ID = uniqueName('default-job-id');
const QUEUES = [DURABLE, OTHER_DURABLE, PLAIN, DEFAULT_ID];
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

  @Transactional({ propagation: Propagation.RequiresNew })
  async requiresNew<T>(fn: () => Promise<T>, label = uniqueName('order')) {
    const result = await fn();
    await this.host.getRepository(Order).save({ label });
    return result;
  }
}

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/** `promise`, or a rejection if it has not settled within `ms` (it would be waiting). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer!: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not end within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Whether `promise` is still pending (has not settled by the next macrotask). */
async function pending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return !settled;
}

describe('when a durable job is added with a jobId another add used already', () => {
  let app: INestApplication;
  let tx: Tx;
  let outbox: TransactionalOutbox;
  const aware = (name: string): TransactionAwareQueue<Payload> =>
    app.get(getTransactionAwareQueueToken(name));
  const bull = (name: string): Queue<Payload> => bullQueue(app, name);
  /** The outbox rows of `jobId` (every add writes one), by queue and data. */
  const rows = (jobId: string) =>
    dbQuery(
      app.get(DataSource),
      `SELECT queue, data FROM ${TABLE} WHERE opts->>'jobId' = $1
        ORDER BY queue, (data->>'n')::int`,
      [jobId],
    ) as Promise<{ queue: string; data: Payload }[]>;
  const orderSaved = (label: string) =>
    app.get(DataSource).getRepository(Order).existsBy({ label });
  const allMarked = () =>
    waitFor(
      async () => (await outbox.stats()).pending === 0,
      'the fast path to mark every row',
    );
  const oneJob = async (name: string, jobId: string) => {
    expect(await bull(name).getJobCounts()).toEqual({
      ...NO_JOBS,
      waiting: 1,
    });
    return (await bull(name).getJob(jobId))?.data;
  };

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Tx],
      queues: [
        { name: DURABLE, durable: true },
        { name: OTHER_DURABLE, durable: true },
        { name: PLAIN },
        {
          name: DEFAULT_ID,
          durable: true,
          bull: { defaultJobOptions: { jobId: DEFAULT_JOB_ID } },
        },
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

  it('should make one job of two adds in one transaction, with the first data, and commit the transaction', async () => {
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
    expect(await rows(jobId)).toEqual(
      [1, 2, 3, 4].map((n) => ({ queue: DURABLE, data: { n } })),
    );
    expect(await oneJob(DURABLE, jobId)).toEqual({ n: 1 });
    await allMarked();
  });

  it('should commit both of two transactions, and keep the job Bull received first while it holds it', async () => {
    const jobId = uniqueName('two-tx');
    const label = uniqueName('order');

    await tx.run(() => aware(DURABLE).add({ n: 1 }, { jobId }));
    const second = await tx.run(
      () => aware(DURABLE).add({ n: 2 }, { jobId }),
      label,
    );

    expect(second).toBe(jobId);
    expect(await orderSaved(label)).toBe(true);
    expect(await rows(jobId)).toEqual([
      { queue: DURABLE, data: { n: 1 } },
      { queue: DURABLE, data: { n: 2 } },
    ]);
    expect(await oneJob(DURABLE, jobId)).toEqual({ n: 1 });
    await allMarked();
  });

  it('should keep the job that reaches Redis first when the first one is left to the relay (its fast path failed)', async () => {
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
    expect(await queue.getJob(jobId)).toBeNull();
    await tx.run(() => aware(DURABLE).add({ n: 2 }, { jobId }));
    expect((await queue.getJob(jobId))?.data).toEqual({ n: 2 });
    await waitFor(
      async () => (await outbox.stats()).pending === 1,
      'the fast path to mark the second row',
    );
    await makeOutboxRowsEligible(app.get(DataSource), TABLE);

    // The relay hands the first row to Bull, which ignores the job id it holds.
    expect(await outbox.relayOnce()).toBe(1);

    expect(await oneJob(DURABLE, jobId)).toEqual({ n: 2 });
    expect(await rows(jobId)).toEqual([
      { queue: DURABLE, data: { n: 1 } },
      { queue: DURABLE, data: { n: 2 } },
    ]);
    expect((await outbox.stats()).pending).toBe(0);
  });

  describe('when two transactions add it concurrently', () => {
    it('should not make the second wait for the first: it commits while the first is open, and its job reaches Redis first', async () => {
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
      try {
        await expect(
          within(
            tx.run(() => aware(DURABLE).add({ n: 2 }, { jobId }), second),
            3_000,
            'the second transaction',
          ),
        ).resolves.toBe(jobId);
        expect(await pending(first)).toBe(true);
        expect(await orderSaved(second)).toBe(true);
        expect((await bull(DURABLE).getJob(jobId))?.data).toEqual({ n: 2 });
      } finally {
        release.open();
      }

      await expect(first).resolves.toBeUndefined();
      expect(await rows(jobId)).toEqual([
        { queue: DURABLE, data: { n: 1 } },
        { queue: DURABLE, data: { n: 2 } },
      ]);
      expect(await oneJob(DURABLE, jobId)).toEqual({ n: 2 });
      await allMarked();
    });

    it("should enqueue the second one's job when the first rolls back", async () => {
      const jobId = uniqueName('concurrent-rollback');
      const firstAdded = gate();
      const secondAdded = gate();
      const releaseFirst = gate();
      const releaseSecond = gate();

      const first = tx.run(async () => {
        await aware(DURABLE).add({ n: 1 }, { jobId });
        firstAdded.open();
        await releaseFirst.opened;
        throw new Error('first rolls back');
      });
      await firstAdded.opened;
      const other = tx.run(async () => {
        const id = await aware(DURABLE).add({ n: 2 }, { jobId });
        secondAdded.open();
        await releaseSecond.opened;
        return id;
      });
      try {
        await within(secondAdded.opened, 3_000, "the second transaction's add");
      } finally {
        releaseFirst.open();
        await expect(first).rejects.toThrow('first rolls back');
        releaseSecond.open();
      }

      await expect(other).resolves.toBe(jobId);
      expect(await rows(jobId)).toEqual([{ queue: DURABLE, data: { n: 2 } }]);
      expect(await oneJob(DURABLE, jobId)).toEqual({ n: 2 });
      await allMarked();
    });
  });

  describe('when a REQUIRES_NEW scope inside a transaction adds the jobId that transaction added', () => {
    const cases: [string, string, () => string][] = [
      ['given by the caller', DURABLE, () => uniqueName('requires-new')],
    ];
    // NOTE: BullMQ never uses a default jobId (its add() sets opts.jobId over the defaults).
    if (LIB_QUEUE === 'bull') {
      cases.push([
        "from the queue's defaultJobOptions",
        DEFAULT_ID,
        () => DEFAULT_JOB_ID,
      ]);
    }
    it.each(cases)(
      'should not wait for its caller (jobId %s): both commit, one job',
      async (_, name, makeId) => {
        const jobId = makeId();
        const opts = name === DURABLE ? { jobId } : {};
        const inner = uniqueName('order');
        const outer = uniqueName('order');

        const ids = await within(
          tx.run(async () => {
            const first = await aware(name).add({ n: 1 }, opts);
            const second = await tx.requiresNew(
              () => aware(name).add({ n: 2 }, opts),
              inner,
            );
            return [first, second];
          }, outer),
          3_000,
          'the transaction',
        );

        expect(ids).toEqual([jobId, jobId]);
        expect(await orderSaved(inner)).toBe(true);
        expect(await orderSaved(outer)).toBe(true);
        expect(await rows(jobId)).toEqual([
          { queue: name, data: { n: 1 } },
          { queue: name, data: { n: 2 } },
        ]);
        // The inner scope commits, and reaches Redis, first.
        expect(await oneJob(name, jobId)).toEqual({ n: 2 });
        await allMarked();
      },
      6_000,
    );
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
    expect(await oneJob(DURABLE, jobId)).toEqual({ n: 1 });
    expect(await oneJob(OTHER_DURABLE, jobId)).toEqual({ n: 2 });
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
