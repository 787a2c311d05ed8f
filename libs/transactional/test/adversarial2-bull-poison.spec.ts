import { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  TransactionalError,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  processJobs,
  waitFor,
} from './support/lib-app';
import { dbQuery } from './support/db';
import {
  createOutboxTable,
  insertOutboxRow,
  makeOutboxRowsEligible,
} from './support/outbox-table';
import { describeBullOnly } from './support/queue-kind';

const PLAIN = uniqueName('adv2-poison-plain');
const DURABLE = uniqueName('adv2-poison-durable');
const TABLE = 'tx_spec_outbox_adv2_poison';

describeBullOnly(
  'repeat options are Bull-only (BullMQ refuses opts.repeat in add())',
)('adversarial2: Bull job options Bull refuses only at enqueue time', () => {
  let app: INestApplication;
  const host = () => app.get(TransactionHost);
  const aware = (name: string) =>
    app.get<TransactionAwareQueue<any>>(getTransactionAwareQueueToken(name));

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
      options: {
        outbox: {
          tableName: TABLE,
          relay: {
            enabled: false,
            graceMs: 0,
            pollIntervalMs: 50,
            maxBackoffMs: 100,
          },
        },
      },
      listen: false,
    });
  });

  afterAll(() => closeLibApp(app, [PLAIN, DURABLE]));

  it('should refuse inside the transaction a repeatable job whose cron Bull cannot read (the schedule would be lost after the commit)', async () => {
    const refused = await host()
      .withTransaction(() =>
        aware(PLAIN).add(
          'nightly',
          { n: 1 },
          { repeat: { cron: 'every night' } },
        ),
      )
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransactionalError);
    expect(String((refused as Error).message)).toMatch(/cron Bull cannot read/);
    expect(await bullQueue(app, PLAIN).getRepeatableJobs()).toEqual([]);
  });

  it('durable: one invalid repeatable row (written by hand) must not make the relay re-dispatch (and re-run) a committed job of another transaction again and again', async () => {
    const runs: string[] = [];
    processJobs(app, DURABLE, 1, async (job) => {
      runs.push(String(job.id));
    });
    const good = await host().withTransaction(() =>
      aware(DURABLE).add({ n: 1 }, { removeOnComplete: true }),
    );
    const poison = uniqueName('poison');
    await insertOutboxRow(app.get(DataSource), TABLE, {
      queue: DURABLE,
      id: poison,
      jobName: '__default__',
      data: { n: 2 },
      opts: { repeat: { cron: 'every night' } },
    });
    const outbox = app.get(TransactionalOutbox);
    for (let i = 0; i < 4; i++) {
      await makeOutboxRowsEligible(app.get(DataSource), TABLE);
      await outbox.relayOnce().catch(() => undefined);
      const before = runs.length;
      await waitFor(
        async () =>
          runs.length > before ||
          !(await inRedis(bullQueue(app, DURABLE), good)),
        'the worker to take the job',
        5_000,
      ).catch(() => undefined);
      await waitFor(
        async () => !(await inRedis(bullQueue(app, DURABLE), good)),
        'the job to be removed on completion',
        5_000,
      );
    }
    expect(runs.filter((id) => id === good).length).toBe(1);
    // Only the poison row backs off, with its error; the good one is marked relayed.
    const rows = await dbQuery(
      app.get(DataSource),
      `SELECT id, relay_attempts, last_error, dispatched_at FROM ${TABLE} WHERE queue = $1`,
      [DURABLE],
    );
    const byId = new Map(rows.map((r: any) => [r.id, r]));
    expect(byId.get(poison)).toMatchObject({ dispatched_at: null });
    expect(Number(byId.get(poison).relay_attempts)).toBeGreaterThanOrEqual(1);
    expect(String(byId.get(poison).last_error)).toMatch(
      /alias|cron|Validation/i,
    );
    expect(
      [...byId.values()].filter(
        (r: any) => r.id !== poison && r.dispatched_at === null,
      ),
    ).toEqual([]);
  });
});
