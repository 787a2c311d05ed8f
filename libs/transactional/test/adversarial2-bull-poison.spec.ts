import { TransactionalError, TransactionalOutbox } from '../src';
import { RELAY_BY_HAND, useAdversarialApp } from './support/adversarial-app';
import { uniqueName } from './support/env';
import { inRedis, processJobs, waitFor } from './support/lib-app';
import { dbQuery } from './support/db';
import {
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
  const app = useAdversarialApp({
    plain: PLAIN,
    durable: DURABLE,
    outboxTable: TABLE,
    outbox: RELAY_BY_HAND,
    watchFailures: false,
  });

  it('should refuse inside the transaction a repeatable job whose cron Bull cannot read (the schedule would be lost after the commit)', async () => {
    const refused = await app.host
      .withTransaction(() =>
        app.plain.add('nightly', { n: 1 }, { repeat: { cron: 'every night' } }),
      )
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransactionalError);
    expect(String((refused as Error).message)).toMatch(/cron Bull cannot read/);
    expect(await app.plainBull.getRepeatableJobs()).toEqual([]);
  });

  it('durable: one invalid repeatable row (written by hand) must not make the relay re-dispatch (and re-run) a committed job of another transaction again and again', async () => {
    const runs: string[] = [];
    processJobs(app.nest, DURABLE, 1, async (job) => {
      runs.push(String(job.id));
    });
    const good = await app.host.withTransaction(() =>
      app.durable.add({ n: 1 }, { removeOnComplete: true }),
    );
    const poison = uniqueName('poison');
    await insertOutboxRow(app.ds, TABLE, {
      queue: DURABLE,
      id: poison,
      jobName: '__default__',
      data: { n: 2 },
      opts: { repeat: { cron: 'every night' } },
    });
    const outbox = app.nest.get(TransactionalOutbox);
    for (let i = 0; i < 4; i++) {
      await makeOutboxRowsEligible(app.ds, TABLE);
      await outbox.relayOnce().catch(() => undefined);
      const before = runs.length;
      await waitFor(
        async () =>
          runs.length > before || !(await inRedis(app.durableBull, good)),
        'the worker to take the job',
        5_000,
      ).catch(() => undefined);
      await waitFor(
        async () => !(await inRedis(app.durableBull, good)),
        'the job to be removed on completion',
        5_000,
      );
    }
    expect(runs.filter((id) => id === good).length).toBe(1);
    // Only the poison row backs off, with its error; the good one is marked relayed.
    const rows = await dbQuery(
      app.ds,
      `SELECT id, relay_attempts, last_error, dispatched_at FROM ${TABLE} WHERE queue = $1`,
      [DURABLE],
    );
    const byId = new Map<string, any>(rows.map((r: any) => [r.id, r]));
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
