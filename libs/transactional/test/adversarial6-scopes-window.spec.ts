/**
 * adversarial6 (the savepoint rollback window): a NESTED scope's body rejects while code of that
 * same scope is still running (Promise.all with a sibling that fails, or a promise the body left
 * running). The runner sends ROLLBACK TO SAVEPOINT at once, but marks the savepoint frame closed
 * only once the ROLLBACK TO has completed. A statement the still-running code issues in between
 * passes the statement gate (its frame is still "open" and on top), is queued on the connection
 * behind the ROLLBACK TO, and so runs in the ENCLOSING transaction: it commits with it.
 *
 * - a durable add() in that window writes its outbox row outside the savepoint: the row
 *   commits and the relay enqueues a job whose rows were rolled back (the promise: a job exists
 *   iff its transaction and every enclosing savepoint scope committed; README "Work registered
 *   after its scope has ended is refused ... nothing is sent for rows that may have rolled back");
 * - a plain INSERT in that window commits, although its scope rolled back, while the job added
 *   with it is dropped (a committed row with no job).
 *
 * Found by adversarial6-scopes.spec.ts (minimal counterexample: REQUIRED { NESTED { detached
 * REQUIRED { insert; durable add } ; throw } }).
 */
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Propagation,
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
  findJob,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

const PLAIN = uniqueName('a6w-plain');
const DURABLE = uniqueName('a6w-durable');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TABLE = 'tx_spec_a6w_outbox';

class AppError extends Error {}

for (const coalesceRoundTrips of onMariaDb ? [true] : [true, false])
  describe(`adversarial6: statements of a NESTED scope racing its own rollback (${LIB_QUEUE}, coalesceRoundTrips ${coalesceRoundTrips})`, () => {
    const failures = watchProcessFailures();
    let app: Awaited<ReturnType<typeof createLibApp>>;
    let host: TransactionHost;
    let ds: DataSource;
    let plain: TransactionAwareQueue<any>;
    let durable: TransactionAwareQueue<any>;

    beforeAll(async () => {
      await createOutboxTable(TABLE);
      app = await createLibApp({
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
      ds = app.get(DataSource);
      plain = app.get(getTransactionAwareQueueToken(PLAIN));
      durable = app.get(getTransactionAwareQueueToken(DURABLE));
    });
    afterAll(async () => {
      await closeLibApp(app, [PLAIN, DURABLE]);
      failures.dispose();
    });
    afterEach(() => {
      expect(failures.unhandledRejections).toEqual([]);
      expect(failures.uncaughtExceptions).toEqual([]);
    });

    const insert = (label: string) =>
      dbQuery(
        host.manager,
        'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
        [label],
      );

    async function state(
      labels: string[],
      jobIds: (string | undefined)[],
      queue: TransactionAwareQueue<any>,
    ) {
      while ((await app.get(TransactionalOutbox).relayOnce()) > 0);
      await new Promise((r) => setTimeout(r, 50));
      const rows = await dbQuery(
        ds,
        'SELECT label FROM tx_spec_orders WHERE label = ANY($1)',
        [labels],
      );
      const outboxRows = await dbQuery(
        ds,
        `SELECT id FROM ${TABLE} WHERE data->>'label' = ANY($1)`,
        [labels],
      );
      const jobs: string[] = [];
      for (const id of jobIds) {
        if (id && (await findJob(bullQueue(app, queue.name), id)))
          jobs.push(id);
      }
      return {
        rows: rows.map((r: { label: string }) => r.label).sort(),
        outboxRows: outboxRows.length,
        jobs,
      };
    }

    it('Promise.all in a NESTED scope, one branch fails: a durable add() of the other branch right after its INSERT leaves no outbox row and no job', async () => {
      const label = uniqueName('a6w');
      let id: string | undefined;
      let addError: unknown;
      await host.withTransaction(async () => {
        await host
          .withTransaction(
            () =>
              Promise.all([
                (async () => {
                  await insert(label);
                  id = await durable.add('j', { label }).catch((error) => {
                    addError = error;
                    return undefined;
                  });
                })(),
                Promise.resolve().then(() => {
                  throw new AppError('sibling fails');
                }),
              ]),
            { propagation: Propagation.Nested },
          )
          .catch((error) => {
            if (!(error instanceof AppError)) throw error;
          });
      });
      await new Promise((r) => setTimeout(r, 100));
      // The row rolled back with the savepoint; its job must not exist.
      expect({
        ...(await state([label], [id], durable)),
        addError: addError ? String(addError) : undefined,
      }).toMatchObject({ rows: [], outboxRows: 0, jobs: [] });
    });

    it('Promise.all in a NESTED scope, one branch fails: the second INSERT of the other branch does not commit outside its savepoint', async () => {
      const [a, b] = [uniqueName('a6w'), uniqueName('a6w')];
      let id: string | undefined;
      await host.withTransaction(async () => {
        await host
          .withTransaction(
            () =>
              Promise.all([
                (async () => {
                  await insert(a);
                  await insert(b); // sent while the ROLLBACK TO SAVEPOINT is in flight
                  id = await plain
                    .add('j', { label: b })
                    .catch(() => undefined);
                })().catch(() => undefined),
                Promise.resolve().then(() => {
                  throw new AppError('sibling fails');
                }),
              ]),
            { propagation: Propagation.Nested },
          )
          .catch((error) => {
            if (!(error instanceof AppError)) throw error;
          });
      });
      await new Promise((r) => setTimeout(r, 100));
      // Every statement of the rolled-back NESTED scope is undone (or refused): no row, no job.
      expect(await state([a, b], [id], plain)).toMatchObject({
        rows: [],
        jobs: [],
      });
    });

    it('a REQUIRED scope left running by a NESTED scope that throws: its durable add() after its INSERT leaves no job', async () => {
      const label = uniqueName('a6w');
      let inner!: Promise<string | undefined>;
      await host.withTransaction(async () => {
        await host
          .withTransaction(
            async () => {
              inner = host
                .withTransaction(async () => {
                  await insert(label);
                  return durable.add('j', { label });
                })
                .catch(() => undefined);
              throw new AppError('nested fails');
            },
            { propagation: Propagation.Nested },
          )
          .catch((error) => {
            if (!(error instanceof AppError)) throw error;
          });
        await inner;
      });
      const id = await inner;
      expect(await state([label], [id], durable)).toMatchObject({
        rows: [],
        outboxRows: 0,
        jobs: [],
      });
    });

    // README ("Transaction semantics"): "A durable add() called while the scope was open and not
    // awaited is not late: its outbox row was written in the transaction, so it resolves, and the
    // relay enqueues the job if the transaction committed." When the outbox row is written at
    // add() (MariaDB; Postgres with coalesceRoundTrips false), its INSERT waits at the statement
    // gate behind a savepoint that a NESTED scope left running still holds; the outermost scope
    // returns and COMMITs meanwhile, and the waiting INSERT is then refused: the row committed,
    // add() rejects with TransactionClosedError, no job ever.
    it('a durable add() not awaited by the root scope, while a NESTED scope left running holds its savepoint: the committed row gets its job', async () => {
      const label = uniqueName('a6w');
      let nested!: Promise<unknown>;
      let adding!: Promise<{ id?: string; error?: string }>;
      await host.withTransaction(async () => {
        await insert(label);
        nested = host
          .withTransaction(
            async () => {
              await host.manager.query('SELECT 1');
              await sleep(150);
            },
            { propagation: Propagation.Nested },
          )
          .catch((error: unknown) => error);
        await sleep(30); // the savepoint is open
        adding = durable.add('j', { label }).then(
          (id) => ({ id }),
          (error: unknown) => ({ error: String(error).slice(0, 80) }),
        );
      });
      await nested;
      const added = await adding;
      const after = await state([label], [added.id], durable);
      expect({ ...after, error: added.error }).toMatchObject({
        rows: [label],
        outboxRows: 1,
        jobs: [added.id],
        error: undefined,
      });
    });
  });
