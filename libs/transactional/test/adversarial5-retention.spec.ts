import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  processJobs,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/**
 * adversarial5: outbox retention (dispatched rows deleted once `retentionMs` has passed)
 * racing the fast path's marker and the relay. retentionMs 0 deletes every dispatched row at
 * the relay's next cleanup (every 60 polls; polling every 2 ms), graceMs 40 makes the relay
 * take rows right after the fast path's budget, and a second relay runs by hand meanwhile.
 * Promise: every committed job runs exactly once (jobs removed on completion, so a second
 * hand-over would run again), no rolled-back job runs, nothing is left pending; and the
 * library's own background statements make no application transaction fail (on MariaDB the
 * retention DELETE, run at REPEATABLE READ, takes next-key locks on the outbox index and
 * deadlocks the INSERTs of durable jobs).
 */
const QUEUE = uniqueName('a5-retention');
const TABLE = `a5_retention_outbox_${process.pid}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let app: INestApplication;
let host: TransactionHost;
let outbox: TransactionalOutbox;
let queue: TransactionAwareQueue<any>;
let bull: Queue;
const failures = watchProcessFailures();
const runs = new Map<string, number>();

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: QUEUE, durable: true }],
    options: {
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        fastPathTimeoutMs: 300,
        relay: {
          enabled: true,
          graceMs: 40,
          pollIntervalMs: 2,
          retentionMs: 0,
          leaseMs: 5000,
        },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  outbox = app.get(TransactionalOutbox);
  queue = app.get(getTransactionAwareQueueToken(QUEUE));
  bull = bullQueue(app, QUEUE);
  processJobs(app, QUEUE, 8, async (job) => {
    runs.set(String(job.id), (runs.get(String(job.id)) ?? 0) + 1);
  });
});

afterAll(async () => {
  await closeLibApp(app, [QUEUE]);
  failures.dispose();
});

it('retention 0 with the relay and the fast path racing: no application transaction fails, each committed job runs once, rolled-back ones never, no row left', async () => {
  const committed: string[] = [];
  const rolledBack: string[] = [];
  const errors: Error[] = [];
  let stop = false;
  // A second relay (by hand) claiming alongside the polling one.
  const byHand = (async () => {
    while (!stop) {
      await outbox.relayOnce().catch(() => 0);
      await sleep(3);
    }
  })();
  try {
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        await sleep(i * 3);
        let id = '';
        const rollBack = i % 3 === 0;
        const ok = await host
          .withTransaction(async () => {
            id = await queue.add({ i }, { removeOnComplete: true });
            // Some transactions last longer than the grace period.
            if (i % 4 === 1) await sleep(60);
            if (rollBack) throw new Error('rollback');
          })
          .then(
            () => true,
            (error: Error) => {
              if (error.message !== 'rollback') errors.push(error);
              return false;
            },
          );
        (ok ? committed : rolledBack).push(id);
      }),
    );
    await waitFor(
      () => committed.every((id) => runs.get(id) !== undefined),
      'every committed job to run',
      15_000,
    );
    await waitFor(
      async () => (await outbox.stats()).dispatched === 0,
      'retention to delete every dispatched row',
      15_000,
    );
    await sleep(500);
  } finally {
    stop = true;
    await byHand;
  }
  expect(errors.map((e) => e.message)).toEqual([]);
  expect(await outbox.stats()).toMatchObject({ pending: 0, dispatched: 0 });
  expect(committed.filter((id) => runs.get(id) !== 1)).toEqual([]);
  expect(rolledBack.filter((id) => runs.has(id))).toEqual([]);
  for (const id of rolledBack) expect(await findJob(bull, id)).toBeNull();
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});
