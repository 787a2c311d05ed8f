import { INestApplication } from '@nestjs/common';
import * as fc from 'fast-check';
import {
  getTransactionAwareQueueToken,
  Propagation,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  closeLibApp,
  createLibApp,
  processJobs,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/**
 * adversarial4: the relay's timing (README "Durable mode": graceMs "a row becomes eligible for
 * the relay this long after its transaction commits, however long the transaction"). Random
 * transactions, each with a durable job: open for a random time
 * around the grace period, the job added in the root scope or in a NESTED one, after-commit
 * steps before the job's flush that take a random time, commit or rollback. The relay polls
 * every 10 ms in the same app and in a second app on the same table. Jobs stay in Redis once
 * processed (README: with removeOnComplete a late relay may run a job again, the documented
 * at-least-once caveat), so Bull ignores any re-add: each committed job must run exactly once,
 * each rolled-back one never, and every row of a committed job ends dispatched.
 */
const QUEUE = uniqueName('a4-race');
const TABLE = `a4_race_${process.pid}`;
const GRACE_MS = 150;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const txArb = fc.record({
  openMs: fc.constantFrom(0, 20, 60, 74, 76, 100, 140, 160, 300),
  hookMs: fc.constantFrom(0, 10, 40, 70, 90, 110, 140, 200),
  nested: fc.boolean(),
  rollback: fc.boolean(),
});

describe('adversarial4: relay and fast path racing on durable rows (two apps, one table)', () => {
  const failures = watchProcessFailures();
  let a: INestApplication;
  let b: INestApplication;
  const runs = new Map<string, number>();

  const make = () =>
    createLibApp({
      queues: [{ name: QUEUE, durable: true }],
      options: {
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 1,
          fastPathTimeoutMs: 300,
          relay: { enabled: true, graceMs: GRACE_MS, pollIntervalMs: 10 },
        },
      },
      listen: false,
    });

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    a = await make();
    b = await make();
    processJobs(a, QUEUE, 8, async (job: any) => {
      runs.set(job.data.tag, (runs.get(job.data.tag) ?? 0) + 1);
    });
  });

  afterAll(async () => {
    await closeLibApp(b, []);
    await closeLibApp(a, [QUEUE]);
    failures.dispose();
  });

  it('each committed job runs exactly once, each rolled-back one never', async () => {
    const host = a.get(TransactionHost);
    const queue: TransactionAwareQueue<any> = a.get(
      getTransactionAwareQueueToken(QUEUE),
    );
    const outbox = a.get(TransactionalOutbox);
    await fc.assert(
      fc.asyncProperty(
        fc.array(txArb, { minLength: 4, maxLength: 10 }),
        async (txs) => {
          const committed: string[] = [];
          const dropped: string[] = [];
          await Promise.all(
            txs.map(async (t) => {
              const tag = uniqueName('r');
              const add = () =>
                queue.add(
                  { tag },
                  { removeOnComplete: false, removeOnFail: false },
                );
              try {
                await host.withTransaction(async () => {
                  await host.afterCommit(() => sleep(t.hookMs));
                  if (t.nested)
                    await host.withTransaction(add, {
                      propagation: Propagation.Nested,
                    });
                  else await add();
                  await sleep(t.openMs);
                  if (t.rollback) throw new Error('rollback');
                });
                committed.push(tag);
              } catch {
                dropped.push(tag);
              }
            }),
          );
          await waitFor(
            async () =>
              (await outbox.stats()).pending === 0 &&
              committed.every((tag) => runs.has(tag)),
            'every committed job processed',
            15_000,
          ).catch(async (e) => {
            throw new Error(
              `${String(e)}: ${JSON.stringify({ stats: await outbox.stats(), txs, committed: committed.map((t) => runs.get(t) ?? 0) })}`,
            );
          });
          await sleep(GRACE_MS * 2);
          const seen = Object.fromEntries(
            [...committed, ...dropped].map((tag) => [tag, runs.get(tag) ?? 0]),
          );
          const expected = Object.fromEntries([
            ...committed.map((tag) => [tag, 1]),
            ...dropped.map((tag) => [tag, 0]),
          ]);
          expect(seen).toEqual(expected);
        },
      ),
      { numRuns: 12, endOnFailure: true },
    );
  }, 55_000);

  it('no unhandled rejection or uncaught exception', () => {
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
