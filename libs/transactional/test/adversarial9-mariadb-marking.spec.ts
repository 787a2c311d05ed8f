import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  getTransactionAwareQueueToken,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  jobCounts,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/**
 * adversarial9: a few thousand durable jobs in one transaction, on both databases. The outbox
 * statements that take a list of row keys (marking rows dispatched after the fast path, and the
 * grace UPDATE sent before COMMIT when the transaction has been open for more than half of
 * `graceMs`) must stay fast for any number of keys: the first one decides whether the relay
 * dispatches every job a second time, the second one holds the caller's transaction open
 * (its locks, its connection) before the COMMIT.
 *
 * Measured on MariaDB 10.11 (an outbox of 28,000 rows, READ COMMITTED): an UPDATE with
 * `WHERE (queue = ? AND id = ?) OR ...` takes 0.2 s for 1,000 keys, 2.7 s for 4,000, 191 s for
 * 8,000 and 231 s for 14,000 (the range optimizer gives up and every row is compared with every
 * key); `queue = ? AND id IN (...)` takes 0.2 s for 14,000. On Postgres (`unnest` of two arrays)
 * it is milliseconds. The budgets below are 20 s, far above what either database needs.
 */
const DURABLE = uniqueName('a9-mark-durable');
const TABLE = `a9_mark_outbox_${process.pid}`;
const N = 8_000;
const BUDGET_MS = 20_000;

jest.setTimeout(400_000);

let app: INestApplication;
let host: TransactionHost;
let durable: TransactionAwareQueue<any>;
let durableBull: Queue;
const failures = watchProcessFailures();

async function start(graceMs: number) {
  app = await createLibApp({
    queues: [{ name: DURABLE, durable: true }],
    options: {
      afterCommitTimeoutMs: 30_000,
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        fastPathTimeoutMs: 20_000,
        // NOTE: the relay stays off: these cases are about the fast path and the COMMIT.
        relay: { enabled: false, graceMs },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  durable = app.get(getTransactionAwareQueueToken(DURABLE));
  durableBull = bullQueue(app, DURABLE);
}

beforeEach(() => createOutboxTable(TABLE));

afterEach(async () => {
  await closeLibApp(app, [DURABLE]);
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

afterAll(() => failures.dispose());

async function pendingRows(): Promise<number> {
  const [row] = await dbQuery(
    host.manager,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE dispatched_at IS NULL`,
  );
  return Number(row.n);
}

/** Resolves with how long `work` took, or -1 once `BUDGET_MS` passed without it settling. */
async function within(work: Promise<unknown>): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const ms = await Promise.race([
    work.then(() => Date.now() - started),
    new Promise<number>((resolve) => {
      timer = setTimeout(() => resolve(-1), BUDGET_MS);
    }),
  ]);
  clearTimeout(timer);
  return ms;
}

it(`the fast path marks the ${N} outbox rows of a committed transaction dispatched within ${BUDGET_MS / 1000} s`, async () => {
  await start(120_000);
  const label = uniqueName('mark');
  await host.withTransaction(async () => {
    await host.getRepository(Order).save({ label });
    await durable.addBulk(
      Array.from({ length: N }, (_, i) => ({ data: { i, label } })),
    );
  });
  await waitFor(
    async () => (await jobCounts(durableBull)).waiting === N,
    'all jobs in Redis',
    BUDGET_MS,
  );
  const marked = await within(
    waitFor(
      async () => (await pendingRows()) === 0,
      'marking',
      BUDGET_MS + 1000,
    ),
  );
  expect(marked).toBeGreaterThanOrEqual(0);
});

it(`a transaction open for more than graceMs / 2 with ${N} durable rows commits within ${BUDGET_MS / 1000} s (the grace UPDATE before COMMIT)`, async () => {
  await start(2_000);
  const label = uniqueName('postpone');
  const committing = host.withTransaction(async () => {
    await host.getRepository(Order).save({ label });
    // NOTE: in a NESTED scope, so that the rows are written at add() on Postgres too.
    await host.withTransaction(
      () =>
        durable.addBulk(
          Array.from({ length: N }, (_, i) => ({ data: { i, label } })),
        ),
      { propagation: Propagation.Nested },
    );
    await new Promise((resolve) => setTimeout(resolve, 1_100));
  });
  const took = await within(committing);
  // Let the rest finish before the app closes (also when the budget was exceeded).
  await committing;
  expect(took).toBeGreaterThanOrEqual(0);
  await waitFor(
    async () => (await jobCounts(durableBull)).waiting === N,
    'all jobs in Redis',
    BUDGET_MS,
  );
});
