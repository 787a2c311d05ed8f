import { INestApplication, Injectable } from '@nestjs/common';
import type { JobOptions, Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Transactional,
  TransactionalOutbox,
  TransactionAwareQueue,
} from '../src';
import { uniqueName } from './support/env';
import { bullQueue, closeLibApp, createLibApp } from './support/lib-app';
import {
  createOutboxTable,
  makeOutboxRowsEligible,
} from './support/outbox-table';
import { describeBullOnly } from './support/queue-kind';
import { dbQuery } from './support/db';

/** Made transaction-aware. */
const AWARE = uniqueName('repeat-aware');
/** The same Bull setup, used through plain Bull: the reference behaviour. */
const PLAIN = uniqueName('repeat-plain');
/** Transaction-aware, with a repeat schedule in the queue's defaultJobOptions. */
const DEFAULTS = uniqueName('repeat-defaults');
const PLAIN_DEFAULTS = uniqueName('repeat-plain-defaults');
/** Transaction-aware, with a rate limiter per group (Bull appends the group to the job id). */
const GROUPED = uniqueName('repeat-grouped');
const PLAIN_GROUPED = uniqueName('repeat-plain-grouped');
/** Durable (outbox). */
const DURABLE = uniqueName('repeat-durable');
const DURABLE_GROUPED = uniqueName('repeat-durable-grouped');
const QUEUES = [
  AWARE,
  PLAIN,
  DEFAULTS,
  PLAIN_DEFAULTS,
  GROUPED,
  PLAIN_GROUPED,
  DURABLE,
  DURABLE_GROUPED,
];
const TABLE = 'tx_spec_outbox_repeat';
const UUID =
  /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const SCHEDULE = { repeat: { every: 3_600_000 } };
const LIMITER = { max: 100, duration: 1000, groupKey: 'customer' };

type Payload = { n: number; customer?: string };

@Injectable()
class Tx {
  /** Runs `fn` in a transaction. */
  @Transactional()
  async run<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** The schedules of a queue as Bull lists them, without what depends on the queue name. */
async function schedules(queue: Queue) {
  return (await queue.getRepeatableJobs()).map(
    ({ key, name, id, cron, every, tz }) => ({
      key,
      name,
      id,
      cron,
      every,
      tz,
    }),
  );
}

describeBullOnly(
  "Bull's repeat schedules and limiter groupKey ids; BullMQ's add() has no repeat (refused: bullmq-job-ids.spec.ts)",
)(
  'when a repeatable job (or one whose id Bull derives) is added through a TransactionAwareQueue',
  () => {
    let app: INestApplication;
    let tx: Tx;
    let outbox: TransactionalOutbox;
    const aware = (name: string): TransactionAwareQueue<Payload> =>
      app.get(getTransactionAwareQueueToken(name));
    const bull = (name: string): Queue<Payload> => bullQueue(app, name);
    const rows = (queue: string) =>
      dbQuery(
        app.get(DataSource),
        `SELECT id, opts, dispatched_at FROM ${TABLE} WHERE queue = $1 ORDER BY created_at`,
        [queue],
      ) as Promise<{ id: string; opts: JobOptions; dispatched_at: Date }[]>;
    /** What the fast path would do after a Redis outage: nothing. Makes `queue.add` fail once. */
    const failNextAdds = (name: string) => {
      const queue = bull(name);
      const add = queue.add;
      const addBulk = queue.addBulk;
      queue.add = (async () => {
        throw new Error('simulated Redis outage');
      }) as any;
      queue.addBulk = queue.add as any;
      return () => {
        queue.add = add;
        queue.addBulk = addBulk;
      };
    };
    /** Makes every pending row eligible for the relay now (as if the grace period had passed). */
    const expireGrace = () =>
      makeOutboxRowsEligible(app.get(DataSource), TABLE);

    beforeAll(async () => {
      await createOutboxTable(TABLE);
      app = await createLibApp({
        providers: [Tx],
        queues: [
          { name: AWARE },
          { name: PLAIN },
          {
            name: DEFAULTS,
            bull: { defaultJobOptions: { repeat: { every: 7_200_000 } } },
          },
          {
            name: PLAIN_DEFAULTS,
            bull: { defaultJobOptions: { repeat: { every: 7_200_000 } } },
          },
          { name: GROUPED, bull: { limiter: LIMITER } },
          { name: PLAIN_GROUPED, bull: { limiter: LIMITER } },
          { name: DURABLE, durable: true },
          { name: DURABLE_GROUPED, durable: true, bull: { limiter: LIMITER } },
        ],
        options: {
          outbox: {
            tableName: TABLE,
            relay: { enabled: false },
            markBatchDelayMs: 5,
          },
        },
        listen: false,
      });
      tx = app.get(Tx);
      outbox = app.get(TransactionalOutbox);
    });

    afterAll(() => closeLibApp(app, QUEUES));

    beforeEach(async () => {
      for (const name of QUEUES) {
        await bull(name).obliterate({ force: true });
      }
      // NOTE: the specs count what relayOnce() dispatches, so no row of an earlier spec may be
      // pending: one whose fast path overran its budget on a loaded machine (or whose marking is
      // still batched) would be relayed along with this spec's rows.
      await dbQuery(app.get(DataSource), `DELETE FROM ${TABLE}`);
    });

    describe('when the same schedule is added twice', () => {
      it('should make one schedule, as plain Bull does, in one transaction or two, and resolve with its key', async () => {
        await bull(PLAIN).add({ n: 1 }, SCHEDULE);
        await bull(PLAIN).add({ n: 2 }, SCHEDULE);

        const first = await tx.run(async () => [
          await aware(AWARE).add({ n: 1 }, SCHEDULE),
          await aware(AWARE).add({ n: 2 }, SCHEDULE),
        ]);
        const second = await tx.run(() => aware(AWARE).add({ n: 3 }, SCHEDULE));

        const expected = await schedules(bull(PLAIN));
        expect(expected).toHaveLength(1);
        expect(await schedules(bull(AWARE))).toEqual(expected);
        expect([...first, second]).toEqual([
          expected[0].key,
          expected[0].key,
          expected[0].key,
        ]);
        expect(await bull(AWARE).getJobCounts()).toEqual(
          await bull(PLAIN).getJobCounts(),
        );
      });

      it('should key a named cron schedule with a jobId as Bull does, and the resolved key should remove it', async () => {
        const opts = {
          jobId: 'nightly-report',
          repeat: { cron: '0 3 * * *', tz: 'Europe/Paris' },
        };
        await bull(PLAIN).add('report', { n: 1 }, opts);
        await bull(PLAIN).add('report', { n: 1 }, opts);

        const key = await tx.run(() =>
          aware(AWARE).add('report', { n: 1 }, opts),
        );
        await tx.run(() => aware(AWARE).add('report', { n: 2 }, opts));

        const expected = await schedules(bull(PLAIN));
        expect(expected).toEqual([
          expect.objectContaining({ name: 'report', id: 'nightly-report' }),
        ]);
        expect(await schedules(bull(AWARE))).toEqual(expected);
        expect(key).toBe(expected[0].key);
        await bull(AWARE).removeRepeatableByKey(key);
        expect(await bull(AWARE).getRepeatableJobs()).toEqual([]);
        expect(await bull(AWARE).getDelayedCount()).toBe(0);
      });

      it('should make one schedule outside a transaction too', async () => {
        const a = await aware(AWARE).add({ n: 1 }, SCHEDULE);
        const b = await aware(AWARE).add({ n: 2 }, SCHEDULE);

        expect(a).toBe(b);
        expect((await schedules(bull(AWARE))).map((s) => s.key)).toEqual([a]);
      });

      it("should honour a repeat schedule in the queue's defaultJobOptions as Bull does", async () => {
        await bull(PLAIN_DEFAULTS).add({ n: 1 });
        await bull(PLAIN_DEFAULTS).add({ n: 2 });

        const ids = await tx.run(async () => [
          await aware(DEFAULTS).add({ n: 1 }),
          await aware(DEFAULTS).addBulk([
            { data: { n: 2 } },
            { data: { n: 3 } },
          ]),
        ]);

        const expected = await schedules(bull(PLAIN_DEFAULTS));
        expect(expected).toHaveLength(1);
        expect(await schedules(bull(DEFAULTS))).toEqual(expected);
        expect(ids.flat()).toEqual([
          expected[0].key,
          expected[0].key,
          expected[0].key,
        ]);
      });
    });

    describe('when the queue has a rate limiter with a groupKey', () => {
      it('should resolve with the id Bull gives the job (the group appended), as plain Bull names it', async () => {
        const plain = await bull(PLAIN_GROUPED).add(
          { n: 1, customer: 'c1' },
          { jobId: 'order-1' },
        );

        const [generated, explicit] = await tx.run(async () => [
          await aware(GROUPED).add({ n: 1, customer: 'c1' }),
          await aware(GROUPED).add(
            { n: 2, customer: 'c2' },
            { jobId: 'order-1' },
          ),
        ]);

        expect(plain.id).toBe('order-1:c1');
        expect(explicit).toBe('order-1:c2');
        expect((await bull(GROUPED).getJob(explicit))?.data).toEqual({
          n: 2,
          customer: 'c2',
        });
        expect(generated).toMatch(/^[0-9a-f-]{36}:c1$/);
        expect((await bull(GROUPED).getJob(generated))?.data).toEqual({
          n: 1,
          customer: 'c1',
        });
      });
    });

    describe('when the queue is durable', () => {
      it('should write one row per add, with a row id that is not a Bull job id, and make one schedule', async () => {
        const keys = await tx.run(async () => [
          await aware(DURABLE).add({ n: 1 }, SCHEDULE),
          await aware(DURABLE).add({ n: 2 }, SCHEDULE),
        ]);
        await bull(PLAIN).add({ n: 1 }, SCHEDULE);
        const expected = await schedules(bull(PLAIN));

        expect(keys).toEqual([expected[0].key, expected[0].key]);
        expect(await schedules(bull(DURABLE))).toEqual(expected);
        const written = await rows(DURABLE);
        expect(written).toHaveLength(2);
        for (const row of written) {
          expect(row.id).toMatch(UUID);
          expect(row.opts.jobId).toBeUndefined();
          expect(row.opts.repeat).toEqual(SCHEDULE.repeat);
        }
        expect(await bull(DURABLE).getDelayedCount()).toBe(1);
      });

      it('should relay a repeatable job whose fast path failed into the schedule Bull would make', async () => {
        const restore = failNextAdds(DURABLE);
        let keys: string[];
        try {
          keys = await tx.run(async () => [
            await aware(DURABLE).add({ n: 1 }, SCHEDULE),
            await aware(DURABLE).add(
              'named',
              { n: 2 },
              { jobId: 'hourly', repeat: { every: 3_600_000 } },
            ),
          ]);
        } finally {
          restore();
        }
        expect(await bull(DURABLE).getRepeatableJobs()).toEqual([]);
        await expireGrace();

        expect(await outbox.relayOnce()).toBe(2);

        await bull(PLAIN).add({ n: 1 }, SCHEDULE);
        await bull(PLAIN).add(
          'named',
          { n: 2 },
          { jobId: 'hourly', repeat: { every: 3_600_000 } },
        );
        const expected = await schedules(bull(PLAIN));
        expect(
          (await schedules(bull(DURABLE))).sort((a, b) =>
            a.key.localeCompare(b.key),
          ),
        ).toEqual(expected.sort((a, b) => a.key.localeCompare(b.key)));
        expect(keys.sort()).toEqual(expected.map((s) => s.key).sort());
        expect(await outbox.relayOnce()).toBe(0);
      });

      it('should relay a job of a grouped queue under the id add() resolved with', async () => {
        const restore = failNextAdds(DURABLE_GROUPED);
        let id: string;
        try {
          id = await tx.run(() =>
            aware(DURABLE_GROUPED).add(
              { n: 1, customer: 'c9' },
              { jobId: 'order-9' },
            ),
          );
        } finally {
          restore();
        }
        expect(id).toBe('order-9:c9');
        // The row id is not the job id (the caller chose it); the job id travels in opts.
        const written = await rows(DURABLE_GROUPED);
        expect(written).toHaveLength(1);
        expect(written[0].id).toMatch(UUID);
        expect(written[0].opts.jobId).toBe('order-9');
        await expireGrace();

        expect(await outbox.relayOnce()).toBe(1);

        expect((await bull(DURABLE_GROUPED).getJob(id))?.data).toEqual({
          n: 1,
          customer: 'c9',
        });
        expect(await bull(DURABLE_GROUPED).getJobCounts()).toMatchObject({
          waiting: 1,
        });
      });
    });
  },
);
