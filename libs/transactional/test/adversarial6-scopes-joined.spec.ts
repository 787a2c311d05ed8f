/**
 * adversarial6 (joined scopes outliving their savepoint): a REQUIRED / SUPPORTS / MANDATORY scope
 * joins an open NESTED scope (a savepoint), is left running by the NESTED scope's body, and
 * outlives it: the NESTED scope throws, its savepoint rolls back, the enclosing transaction then
 * COMMITs. The joined scope's rows went with the savepoint; its jobs must go too ("jobs and hooks
 * belong to the scope that registered them: they are dropped exactly when its savepoint rolls
 * back"; "a job exists iff its transaction, and every enclosing savepoint scope, committed").
 * Found by adversarial6-scopes.spec.ts (minimal counterexample: REQUIRED { NESTED { detached
 * REQUIRED { insert; durable add } ; throw } }).
 */
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionalOutbox,
} from '../src';
import { dbQuery } from './support/db';
import { onMariaDb, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

const PLAIN = uniqueName('a6j-plain');
const DURABLE = uniqueName('a6j-durable');
const TABLE = 'tx_spec_a6j_outbox';

class AppError extends Error {}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

@Injectable()
class Joined {
  @Transactional({ propagation: Propagation.Required })
  required(fn: () => Promise<unknown>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Supports })
  supports(fn: () => Promise<unknown>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Mandatory })
  mandatory(fn: () => Promise<unknown>) {
    return fn();
  }
}

type Join = 'required' | 'supports' | 'mandatory';
type When = 'before' | 'after';

for (const coalesceRoundTrips of onMariaDb ? [true] : [true, false]) {
  describe(`adversarial6: a scope joined to a NESTED scope that rolls back while it runs (${LIB_QUEUE}, coalesceRoundTrips ${coalesceRoundTrips})`, () => {
    const failures = watchProcessFailures();
    let app: Awaited<ReturnType<typeof createLibApp>>;
    let host: TransactionHost;
    let joined: Joined;
    let ds: DataSource;

    beforeAll(async () => {
      await createOutboxTable(TABLE);
      app = await createLibApp({
        providers: [Joined],
        queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
        listen: false,
        options: {
          coalesceRoundTrips,
          outbox: {
            tableName: TABLE,
            markBatchDelayMs: 1,
            relay: { enabled: false, graceMs: 0 },
          },
        },
      });
      host = app.get(TransactionHost);
      joined = app.get(Joined);
      ds = app.get(DataSource);
    });
    afterAll(async () => {
      await closeLibApp(app, [PLAIN, DURABLE]);
      failures.dispose();
    });
    afterEach(() => {
      expect(failures.unhandledRejections).toEqual([]);
    });

    const cases: [Join, 'plain' | 'durable', When][] = [];
    for (const join of ['required', 'supports', 'mandatory'] as Join[]) {
      for (const kind of ['plain', 'durable'] as const) {
        for (const when of ['before', 'after'] as When[])
          cases.push([join, kind, when]);
      }
    }

    it.each(cases)(
      '%s joined, %s job added %s the savepoint rolled back: no row, no job',
      async (join, kind, when) => {
        const label = uniqueName('a6j');
        const queue: TransactionAwareQueue<any> = app.get(
          getTransactionAwareQueueToken(kind === 'plain' ? PLAIN : DURABLE),
        );
        let release!: () => void;
        const rolledBack = new Promise<void>((resolve) => (release = resolve));
        let inner!: Promise<{ id?: string; error?: unknown }>;
        await host.withTransaction(async () => {
          await host
            .withTransaction(
              async () => {
                // Left running by the NESTED scope's body.
                inner = joined[join](async () => {
                  await dbQuery(
                    host.manager,
                    'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
                    [label],
                  );
                  if (when === 'after') await rolledBack;
                  const id = await queue.add('j', { label });
                  if (when === 'before') await rolledBack;
                  return id;
                }).then(
                  (id) => ({ id: id as string }),
                  (error: unknown) => ({ error }),
                );
                await sleep(100); // the insert (and, 'before', the add) done
                throw new AppError('savepoint rolls back');
              },
              { propagation: Propagation.Nested },
            )
            .catch((error) => {
              if (!(error instanceof AppError)) throw error;
            });
          release();
          await inner;
        });
        const outcome = await inner;
        await app.get(TransactionalOutbox).relayOnce();
        await sleep(50);
        const rows = await dbQuery(
          ds,
          'SELECT label FROM tx_spec_orders WHERE label = $1',
          [label],
        );
        const outboxRows = await dbQuery(
          ds,
          `SELECT id FROM ${TABLE} WHERE data->>'label' = $1`,
          [label],
        );
        const job = outcome.id
          ? await inRedis(bullQueue(app, queue.name), outcome.id)
          : false;
        expect({
          row: rows.length,
          job,
          outboxRows: outboxRows.length,
        }).toEqual({ row: 0, job: false, outboxRows: 0 });
      },
    );
  });
}
