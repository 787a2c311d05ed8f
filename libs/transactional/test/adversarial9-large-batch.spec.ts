import type { Queue } from 'bull';
import { Propagation, TransactionalOutbox } from '../src';
import { useAdversarialApp } from './support/adversarial-app';
import { dbQuery } from './support/db';
import { itOnPostgres, uniqueName } from './support/env';
import { findJob, jobCounts, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';

/**
 * adversarial9: thousands of jobs in one transaction, plain and durable. A batch import that
 * writes 14,000 rows and queues one job per row in one `addBulk()` is an ordinary use; the
 * promise does not depend on the batch size. (Durable rows go to the outbox in INSERTs of at most
 * 10,000 rows: Postgres' extended protocol carries at most 65,535 parameters per statement.)
 */
const PLAIN = uniqueName('a9-big-plain');
const DURABLE = uniqueName('a9-big-durable');
const TABLE = `a9_big_outbox_${process.pid}`;
const N = 14_000;

jest.setTimeout(120_000);

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  moduleOptions: { afterCommitTimeoutMs: 30_000 },
  outbox: {
    markBatchDelayMs: 1,
    fastPathTimeoutMs: 20_000,
    relay: { enabled: true, graceMs: 30_000, pollIntervalMs: 100 },
  },
});

/** What a transaction ended with, for an assertion that shows the error. */
function outcomeOf(outcome: unknown): string {
  return Array.isArray(outcome)
    ? `committed ${outcome.length} ids`
    : `rejected: ${outcome instanceof Error ? `${outcome.name}: ${outcome.message}` : String(outcome)}`;
}

async function waiting(queue: Queue): Promise<number> {
  return (await jobCounts(queue)).waiting;
}

async function pendingRows(): Promise<number> {
  const [row] = await dbQuery(
    app.host.manager,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE queue = $1 AND dispatched_at IS NULL`,
    [DURABLE],
  );
  return Number(row.n);
}

async function ordersLabelled(label: string): Promise<number> {
  const [row] = await dbQuery(
    app.host.manager,
    `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
    [label],
  );
  return Number(row.n);
}

it(`plain queue: ${N} jobs in one addBulk() of a committed transaction all reach Redis`, async () => {
  const label = uniqueName('big-plain');
  const ids = await app.host.withTransaction(async () => {
    await app.host.getRepository(Order).save({ label });
    return app.plain.addBulk(
      Array.from({ length: N }, (_, i) => ({ data: { i, label } })),
    );
  });
  expect(new Set(ids).size).toBe(N);
  await waitFor(
    async () => (await waiting(app.plainBull)) === N,
    'all jobs',
    30_000,
  );
  expect((await findJob(app.plainBull, ids[N - 1]))?.data).toEqual({
    i: N - 1,
    label,
  });
  expect(app.plain.stats.failed).toBe(0);
});

itOnPostgres(
  "the 65,535-parameter limit is Postgres' extended protocol (mysql2 formats parameters client-side); MariaDB's large-batch case is adversarial9-mariadb-marking.spec.ts",
)(
  `durable queue: ${N} jobs in one addBulk() are accepted, the transaction commits, and every job reaches Redis`,
  async () => {
    const label = uniqueName('big-durable');
    let added: unknown;
    const outcome = await app.host
      .withTransaction(async () => {
        await app.host.getRepository(Order).save({ label });
        added = await app.durable
          .addBulk(
            Array.from({ length: N }, (_, i) => ({ data: { i, label } })),
          )
          .catch((error: unknown) => error);
        if (added instanceof Error) throw added;
        return added as string[];
      })
      .catch((error: unknown) => error);
    expect(outcomeOf(outcome)).toBe(`committed ${N} ids`);
    const ids = outcome as string[];
    expect(await ordersLabelled(label)).toBe(1);
    await waitFor(
      async () => (await waiting(app.durableBull)) === N,
      'all durable jobs',
      60_000,
    );
    await waitFor(
      async () => (await pendingRows()) === 0,
      'no pending row',
      30_000,
    );
    expect((await findJob(app.durableBull, ids[N - 1]))?.data).toEqual({
      i: N - 1,
      label,
    });
  },
);

itOnPostgres(
  "the 65,535-parameter limit is Postgres' extended protocol (mysql2 formats parameters client-side); MariaDB's large-batch case is adversarial9-mariadb-marking.spec.ts",
)(
  `durable queue inside a NESTED scope (rows written at add()): ${N} jobs in one addBulk() commit and reach Redis`,
  async () => {
    await app.durableBull.obliterate({ force: true });
    const label = uniqueName('big-durable-nested');
    const outcome = await app.host
      .withTransaction(() =>
        app.host.withTransaction(
          async () => {
            await app.host.getRepository(Order).save({ label });
            return app.durable.addBulk(
              Array.from({ length: N }, (_, i) => ({ data: { i, label } })),
            );
          },
          { propagation: Propagation.Nested },
        ),
      )
      .catch((error: unknown) => error);
    expect(outcomeOf(outcome)).toBe(`committed ${N} ids`);
    const ids = outcome as string[];
    expect(await ordersLabelled(label)).toBe(1);
    await waitFor(
      async () => (await waiting(app.durableBull)) === N,
      'all durable jobs',
      60_000,
    );
    await waitFor(
      async () => (await pendingRows()) === 0,
      'no pending row',
      30_000,
    );
    expect((await findJob(app.durableBull, ids[0]))?.data).toEqual({
      i: 0,
      label,
    });
    expect((await app.nest.get(TransactionalOutbox).stats()).pending).toBe(0);
  },
);
