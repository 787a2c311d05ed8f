/**
 * Adversarial: BullMQ job options BullMQ refuses only when it adds the job (after the commit):
 * such a job used to be lost, with every job of its addBulk, and a durable row of one made the
 * relay back off every row of its queue. They are now refused inside the transaction (with
 * BullMQ's own `Job.validateOptions`), and the relay hands the other rows over (a row written
 * by hand stands for one an earlier version accepted).
 */
import { TransactionalError, TransactionalOutbox } from '../src';
import { RELAY_BY_HAND, useAdversarialApp } from './support/adversarial-app';
import { uniqueName } from './support/env';
import { dbQuery } from './support/db';
import { inRedis } from './support/lib-app';
import {
  insertOutboxRow,
  makeOutboxRowsEligible,
} from './support/outbox-table';
import { describeBullMQOnly } from './support/queue-kind';
import { Order } from './support/order.entity';

const PLAIN = uniqueName('adv2-opts-plain');
const DURABLE = uniqueName('adv2-opts-durable');
const TABLE = 'tx_spec_outbox_adv2_opts';

describeBullMQOnly(
  'adversarial2: BullMQ job options BullMQ refuses only at enqueue time',
  () => {
    const app = useAdversarialApp({
      plain: PLAIN,
      durable: DURABLE,
      outboxTable: TABLE,
      outbox: RELAY_BY_HAND,
      watchFailures: false,
    });

    it.each([
      ['a float priority', { priority: 1.5 }, /Priority should not be float/],
      [
        'a priority over the limit',
        { priority: 3_000_000 },
        /Priority should be between/,
      ],
      ['a size over sizeLimit', { sizeLimit: 1 }, /exceeds the limit/],
      [
        'a jitter outside 0-1',
        { backoff: { type: 'fixed', delay: 10, jitter: 2 } },
        /Jitter/,
      ],
      [
        'deduplication without an id',
        { deduplication: {} },
        /Deduplication id/,
      ],
    ])(
      'should refuse inside the transaction a job with %s (BullMQ would refuse it after the commit), and roll back nothing else',
      async (_what, opts, message) => {
        const label = uniqueName('opts');
        let refused: unknown;
        await app.host.withTransaction(async () => {
          await app.host.getRepository(Order).save({ label });
          refused = await app.plain
            .add('job', { label }, opts as any)
            .catch((e: unknown) => e);
        });
        expect(refused).toBeInstanceOf(TransactionalError);
        expect(String((refused as Error).message)).toMatch(message);
        expect(await app.ds.getRepository(Order).countBy({ label })).toBe(1);
      },
    );

    it('should refuse an addBulk with one invalid job inside the transaction, deferring none of its jobs', async () => {
      const ids = [uniqueName('good-a'), uniqueName('good-c')];
      let refused: unknown;
      await app.host.withTransaction(async () => {
        refused = await app.plain
          .addBulk([
            { name: 'good', data: { n: 1 }, opts: { jobId: ids[0] } },
            { name: 'bad', data: { n: 2 }, opts: { priority: 3_000_000 } },
            { name: 'good', data: { n: 3 }, opts: { jobId: ids[1] } },
          ])
          .catch((e: unknown) => e);
      });
      expect(refused).toBeInstanceOf(TransactionalError);
      await new Promise((r) => setTimeout(r, 200));
      const queue = app.plainBull;
      expect([
        await inRedis(queue, ids[0]),
        await inRedis(queue, ids[1]),
      ]).toEqual([false, false]);
    });

    it('durable: one invalid row (written by hand) must not keep a committed job of another transaction from the relay', async () => {
      const good = await app.host.withTransaction(() =>
        app.durable.add('good', { n: 1 }),
      );
      const poison = uniqueName('poison');
      await insertOutboxRow(app.ds, TABLE, {
        queue: DURABLE,
        id: poison,
        jobName: 'poison',
        data: { n: 2 },
        opts: { jobId: poison, sizeLimit: 1 },
      });
      const outbox = app.nest.get(TransactionalOutbox);
      for (let i = 0; i < 3; i++) {
        await makeOutboxRowsEligible(app.ds, TABLE);
        await outbox.relayOnce().catch(() => undefined);
      }
      const rows = await dbQuery(
        app.ds,
        `SELECT id, relay_attempts, last_error, dispatched_at FROM ${TABLE} WHERE queue = $1`,
        [DURABLE],
      );
      const row = (id: string) => rows.find((r: any) => r.id === id);
      expect({
        inRedis: await inRedis(app.durableBull, good),
        goodAttempts: Number(row(good).relay_attempts),
        goodDispatched: row(good).dispatched_at !== null,
        poisonInRedis: await inRedis(app.durableBull, poison),
        poisonDispatched: row(poison).dispatched_at !== null,
      }).toEqual({
        inRedis: true,
        goodAttempts: 0,
        goodDispatched: true,
        poisonInRedis: false,
        poisonDispatched: false,
      });
      expect(Number(row(poison).relay_attempts)).toBeGreaterThanOrEqual(1);
      expect(String(row(poison).last_error)).toMatch(/exceeds the limit/);
    });
  },
);
