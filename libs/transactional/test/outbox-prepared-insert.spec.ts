/**
 * Postgres: the INSERT that writes a transaction's outbox rows with its COMMIT is a prepared
 * statement (`outbox.preparedStatements`, on by default): parsed once per connection and row
 * count, then only bound and executed. What the connection records as prepared must match what
 * the server holds, whatever failed: a Parse the server refused is parsed again, a statement the
 * server lost costs one commit and is prepared again, and nothing is committed or enqueued by a
 * commit that failed. The last case checks random sequences of commits, failing runs and lost
 * statements against a model of the server's prepared statements (`PREPARED_RUNS` cases, 25 by
 * default; a failure prints fast-check's seed, replay with `PREPARED_SEED=<seed>`).
 */
import { INestApplication, Injectable } from '@nestjs/common';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { poolState } from './support/db';
import { onMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';

const DURABLE = uniqueName('prepared-insert');
const RUNS = Number(process.env.PREPARED_RUNS ?? 25);
const OUTBOX = 'tx_spec_prepared_outbox';

@Injectable()
class Orders {
  constructor(
    readonly host: TransactionHost,
    readonly dataSource: DataSource,
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<{ label: string }>,
  ) {}

  /** One order and `jobs` durable jobs in one transaction; the jobs' ids (also in `ids`). */
  async place(label: string, jobs = 1, ids: string[] = []): Promise<string[]> {
    await this.host.withTransaction(async () => {
      await this.host.manager.query(
        `INSERT INTO tx_spec_orders (label) VALUES ($1)`,
        [label],
      );
      for (let i = 0; i < jobs; i++)
        ids.push(await this.durable.add({ label }));
    });
    return ids;
  }

  async orders(label: string): Promise<number> {
    const [{ n }] = await this.dataSource.query(
      `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
      [label],
    );
    return n;
  }

  async outboxRows(label: string): Promise<number> {
    const [{ n }] = await this.dataSource.query(
      `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE data->>'label' = $1`,
      [label],
    );
    return n;
  }

  /**
   * The outbox INSERTs prepared on the pool's only connection: rows per INSERT (its VALUES
   * tuples) and how often each ran.
   */
  async prepared(): Promise<{ rows: number; runs: number }[]> {
    const statements: { statement: string; runs: number }[] =
      await this.dataSource.query(
        `SELECT statement, (generic_plans + custom_plans)::int AS runs
         FROM pg_prepared_statements
         WHERE statement LIKE $1 ORDER BY length(statement)`,
        [`INSERT INTO "${OUTBOX}"%`],
      );
    return statements.map(({ statement, runs }) => ({
      rows: statement.split('clock_timestamp()').length - 1,
      runs,
    }));
  }
}

const describeOnPostgres = onMariaDb ? describe.skip : describe;

describeOnPostgres(
  'the outbox INSERT as a prepared statement (Postgres)',
  () => {
    const apps: INestApplication[] = [];

    /** An app whose pool has one connection, new for each case. */
    async function ordersApp(preparedStatements?: boolean): Promise<Orders> {
      const app = await createLibApp({
        providers: [Orders],
        queues: [{ name: DURABLE, durable: true }],
        listen: false,
        poolSize: 1,
        options: {
          outbox: {
            tableName: OUTBOX,
            relay: { enabled: false, graceMs: 600_000 },
            ...(preparedStatements === undefined ? {} : { preparedStatements }),
          },
        },
      });
      apps.push(app);
      return app.get(Orders);
    }

    /** Whether each job of `ids` is in Redis. */
    const inQueue = (ids: string[]) =>
      Promise.all(ids.map((id) => inRedis(bullQueue(apps[0], DURABLE), id)));

    const enqueued = (ids: string[]) =>
      waitFor(
        async () => (await inQueue(ids)).every(Boolean),
        'the jobs in Redis',
      );

    /** Waits for the fast path of a failed commit, had it run (it must not). */
    const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

    beforeAll(async () => {
      await createOutboxTable(OUTBOX);
    });

    /**
     * Waits until the app's pool holds no connection: none leaked (the fast path's marking
     * UPDATE, 25 ms after an enqueue, borrows one for a moment).
     */
    const noConnectionHeld = (orders: Orders) =>
      waitFor(
        async () => poolState(orders.dataSource).inUse === 0,
        'the pool to hold no connection',
      );

    /** Runs `work` while the outbox table refuses jobs whose label starts with `poison`. */
    async function orderWithPoisonCheck(work: () => Promise<void>) {
      const admin = new DataSource(testDataSourceOptions());
      await admin.initialize();
      await admin.query(
        `ALTER TABLE ${OUTBOX} ADD CONSTRAINT model_poison CHECK (data->>'label' NOT LIKE 'poison%')`,
      );
      try {
        await work();
      } finally {
        await admin.query(`ALTER TABLE ${OUTBOX} DROP CONSTRAINT model_poison`);
        await admin.destroy();
      }
    }

    afterAll(async () => {
      const [first, ...rest] = apps;
      for (const app of rest) await closeLibApp(app, []);
      if (first) await closeLibApp(first, [DURABLE]);
    });

    it('parses the INSERT once per connection and row count, then only binds and runs it', async () => {
      const orders = await ordersApp();
      const label = uniqueName('prepared');
      const ids = [
        ...(await orders.place(label)),
        ...(await orders.place(label)),
        ...(await orders.place(label)),
        ...(await orders.place(label, 2)),
      ];
      expect(await orders.prepared()).toEqual([
        { rows: 1, runs: 3 },
        { rows: 2, runs: 1 },
      ]);
      expect(await orders.orders(label)).toBe(4);
      expect(await orders.outboxRows(label)).toBe(5);
      await enqueued(ids);
    });

    it('sends the INSERT unnamed with preparedStatements: false', async () => {
      const orders = await ordersApp(false);
      const label = uniqueName('unprepared');
      const ids = [
        ...(await orders.place(label)),
        ...(await orders.place(label)),
      ];
      expect(await orders.prepared()).toEqual([]);
      expect(await orders.outboxRows(label)).toBe(2);
      await enqueued(ids);
    });

    it('parses again after a Parse the server refused: that commit fails, the next succeeds', async () => {
      const orders = await ordersApp();
      const label = uniqueName('refused-parse');
      await orders.dataSource.query(
        `ALTER TABLE ${OUTBOX} RENAME TO ${OUTBOX}_away`,
      );
      let refused: unknown;
      const lostIds: string[] = [];
      try {
        refused = await orders
          .place(label, 1, lostIds)
          .catch((error: unknown) => error);
      } finally {
        await orders.dataSource.query(
          `ALTER TABLE ${OUTBOX}_away RENAME TO ${OUTBOX}`,
        );
      }
      expect(
        (refused as { driverError?: { code?: string } }).driverError?.code,
      ).toBe('42P01');
      expect(await orders.orders(label)).toBe(0);
      expect(await orders.prepared()).toEqual([]);
      await settle();
      expect(await inQueue(lostIds)).toEqual([false]);

      const ids = await orders.place(label);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 1 }]);
      expect(await orders.orders(label)).toBe(1);
      await enqueued(ids);
      await noConnectionHeld(orders);
    });

    it('keeps a statement whose run failed after it was parsed: the next commit binds it', async () => {
      const orders = await ordersApp();
      const label = uniqueName('failed-run');
      await orders.dataSource.query(
        `ALTER TABLE ${OUTBOX} ADD CONSTRAINT no_poison_label CHECK (data->>'label' NOT LIKE 'poison%')`,
      );
      let refused: unknown;
      const lostIds: string[] = [];
      try {
        refused = await orders
          .place(`poison-${label}`, 1, lostIds)
          .catch((error: unknown) => error);
      } finally {
        await orders.dataSource.query(
          `ALTER TABLE ${OUTBOX} DROP CONSTRAINT no_poison_label`,
        );
      }
      expect(
        (refused as { driverError?: { code?: string } }).driverError?.code,
      ).toBe('23514');
      expect(await orders.orders(`poison-${label}`)).toBe(0);
      await settle();
      expect(await inQueue(lostIds)).toEqual([false]);
      // Parsed (and planned) before its run failed: the server holds it past the rollback,
      // and the next commit only binds it (a second Parse of the name fails with 42P05).
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 1 }]);

      const ids = await orders.place(label);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 2 }]);
      await enqueued(ids);
    });

    it('records a statement whose ParseComplete came after the client gave up (query_timeout): the next commit binds it', async () => {
      const orders = await ordersApp();
      const client = await orders.host.withTransaction(
        async () =>
          (
            orders.host.manager.queryRunner as unknown as {
              databaseConnection: {
                connectionParameters: { query_timeout?: number };
              };
            }
          ).databaseConnection,
      );
      await orders.dataSource.query(
        `CREATE OR REPLACE FUNCTION ${OUTBOX}_slow() RETURNS trigger AS $$
         BEGIN PERFORM pg_sleep(0.4); RETURN NEW; END $$ LANGUAGE plpgsql`,
      );
      await orders.dataSource.query(
        `CREATE TRIGGER slow_rows BEFORE INSERT ON ${OUTBOX} FOR EACH ROW
         WHEN (NEW.data->>'label' LIKE 'slow%') EXECUTE FUNCTION ${OUTBOX}_slow()`,
      );
      const label = uniqueName('after-timeout');
      try {
        // The client gives up on the COMMIT's round trip while the server runs it on.
        client.connectionParameters.query_timeout = 150;
        const timedOut = await orders
          .place(`slow-${label}`)
          .catch((error: unknown) => error);
        expect(String(timedOut)).toContain('Query read timeout');
        client.connectionParameters.query_timeout = undefined;
        await noConnectionHeld(orders);
      } finally {
        client.connectionParameters.query_timeout = undefined;
        await orders.dataSource.query(`DROP TRIGGER slow_rows ON ${OUTBOX}`);
      }
      // The server parsed the statement: the next commits bind it, they do not parse it again.
      const ids = [
        ...(await orders.place(label)),
        ...(await orders.place(label)),
      ];
      expect(await orders.orders(label)).toBe(2);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 3 }]);
      await enqueued(ids);
    });

    it('a statement the connection forgot it prepared fails one commit with 42P05, and is bound by the next', async () => {
      const orders = await ordersApp();
      const label = uniqueName('forgotten');
      await orders.place(label);
      const record = await orders.host.withTransaction(
        async () =>
          (
            orders.host.manager.queryRunner as unknown as {
              databaseConnection: {
                connection: { parsedStatements: Record<string, string> };
              };
            }
          ).databaseConnection.connection.parsedStatements,
      );
      const names = Object.keys(record).filter((name) =>
        name.startsWith('txo_insert_1_'),
      );
      expect(names).toHaveLength(1);
      delete record[names[0]];

      const lost = `${label}-lost`;
      const failed = await orders.place(lost).catch((error: unknown) => error);
      expect(
        (failed as { driverError?: { code?: string } }).driverError?.code,
      ).toBe('42P05');
      expect(await orders.orders(lost)).toBe(0);

      const again = `${label}-again`;
      const ids = await orders.place(again);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 2 }]);
      await enqueued(ids);
      await noConnectionHeld(orders);
    });

    it('a statement the server lost (DEALLOCATE ALL) fails one commit with 26000, and is prepared again for the next', async () => {
      const orders = await ordersApp();
      const label = uniqueName('deallocated');
      await orders.place(label);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 1 }]);
      await orders.dataSource.query(`DEALLOCATE ALL`);

      const lost = `${label}-lost`;
      const lostIds: string[] = [];
      const failed = await orders
        .place(lost, 1, lostIds)
        .catch((error: unknown) => error);
      expect(
        (failed as { driverError?: { code?: string } }).driverError?.code,
      ).toBe('26000');
      expect(await orders.orders(lost)).toBe(0);
      expect(await orders.outboxRows(lost)).toBe(0);
      await settle();
      expect(await inQueue(lostIds)).toEqual([false]);

      const again = `${label}-again`;
      const ids = await orders.place(again);
      expect(await orders.prepared()).toEqual([{ rows: 1, runs: 1 }]);
      expect(await orders.orders(again)).toBe(1);
      await enqueued(ids);
      await noConnectionHeld(orders);
    });

    /** One step of a connection's life: a commit of `rows` jobs (refused by the table or not). */
    type Step =
      | { kind: 'commit'; rows: number; poison: boolean }
      | { kind: 'deallocate' };

    const steps: fc.Arbitrary<Step[]> = fc.array(
      fc.oneof(
        {
          weight: 5,
          arbitrary: fc.record({
            kind: fc.constant('commit' as const),
            rows: fc.integer({ min: 1, max: 3 }),
            poison: fc.boolean(),
          }),
        },
        {
          weight: 1,
          arbitrary: fc.constant({ kind: 'deallocate' as const }),
        },
      ),
      { minLength: 1, maxLength: 10 },
    );

    it('model: after any sequence of commits, refused runs and lost statements, what the connection prepared is what the server holds', async () => {
      await orderWithPoisonCheck(async () => {
        await fc.assert(
          fc.asyncProperty(steps, async (sequence) => {
            // NOTE: a new connection each case: the client's record starts empty.
            const orders = await ordersApp();
            const app = apps.pop()!;
            try {
              /** What the server holds: runs by row count. */
              const server = new Map<number, number>();
              /** What the client believes it prepared. */
              const client = new Set<number>();
              for (const step of sequence) {
                if (step.kind === 'deallocate') {
                  await orders.dataSource.query(`DEALLOCATE ALL`);
                  server.clear();
                  continue;
                }
                const label = uniqueName(
                  step.poison ? 'poison-model' : 'model',
                );
                const ids: string[] = [];
                const failure = await orders
                  .place(label, step.rows, ids)
                  .then(() => undefined)
                  .catch(
                    (error: { driverError?: { code?: string } }) =>
                      error.driverError?.code ?? String(error),
                  );
                let expected: string | undefined;
                if (client.has(step.rows) && !server.has(step.rows)) {
                  expected = '26000';
                  client.delete(step.rows);
                } else {
                  if (!client.has(step.rows)) {
                    server.set(step.rows, 0);
                    client.add(step.rows);
                  }
                  server.set(step.rows, server.get(step.rows)! + 1);
                  expected = step.poison ? '23514' : undefined;
                }
                expect({ step, failure }).toEqual({
                  step,
                  failure: expected,
                });
                expect(await orders.orders(label)).toBe(expected ? 0 : 1);
                expect(await orders.outboxRows(label)).toBe(
                  expected ? 0 : step.rows,
                );
                expect(await orders.prepared()).toEqual(
                  [...server.entries()]
                    .sort(([a], [b]) => a - b)
                    .map(([rows, runs]) => ({ rows, runs })),
                );
              }
              await noConnectionHeld(orders);
            } finally {
              await closeLibApp(app, []);
            }
          }),
          {
            numRuns: RUNS,
            seed: process.env.PREPARED_SEED
              ? Number(process.env.PREPARED_SEED)
              : undefined,
            endOnFailure: true,
          },
        );
      });
    }, 120_000);
  },
);
