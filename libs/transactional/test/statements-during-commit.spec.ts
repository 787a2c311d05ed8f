import { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { TransactionClosedError, TransactionHost } from '../src';
import { dbQuery } from './support/db';
import { itOnPostgres } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';

/**
 * A statement that code the scope did not await sends while the transaction's COMMIT is on its
 * way. Before, the driver queued it behind the COMMIT and it ran on its own, in autocommit: its
 * row was written outside the transaction that had ended, with no error. It is refused
 * (`TransactionClosedError`), as a statement of a savepoint scope that has ended is.
 * Postgres: a deferred constraint trigger makes the COMMIT take 300 ms, long enough to send a
 * statement behind it.
 */
const TABLE = 'tx_spec_slow_commit';

let app: INestApplication;
let host: TransactionHost;
let ds: DataSource;
const failures = watchProcessFailures();

beforeAll(async () => {
  app = await createLibApp({ queues: [], listen: false });
  host = app.get(TransactionHost);
  ds = app.get(DataSource);
});

afterAll(async () => {
  await ds?.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined);
  await closeLibApp(app, []);
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

itOnPostgres('a deferred constraint trigger is Postgres-only')(
  'should refuse a statement sent while the COMMIT is on its way, and write nothing for it',
  async () => {
    await ds.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await ds.query(`CREATE TABLE ${TABLE} (id serial PRIMARY KEY)`);
    await ds.query(
      `CREATE OR REPLACE FUNCTION tx_spec_slow_commit() RETURNS trigger
         LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$`,
    );
    await ds.query(
      `CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON ${TABLE}
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tx_spec_slow_commit()`,
    );
    const label = `during-commit-${Date.now()}`;
    let late: Promise<unknown> | undefined;
    await host.withTransaction(async () => {
      await host.manager.query(`INSERT INTO ${TABLE} DEFAULT VALUES`);
      await host.getRepository(Order).insert({ label: `${label}-in` });
      // NOTE: not awaited by the scope: sent 100 ms after it returned, while the COMMIT runs,
      // through the manager the scope held.
      const manager = host.manager;
      late = new Promise((resolve) => setTimeout(resolve, 100))
        .then(() =>
          manager.query(`INSERT INTO tx_spec_orders (label) VALUES ($1)`, [
            `${label}-late`,
          ]),
        )
        .then(
          () => 'written',
          (error: unknown) => error,
        );
    });
    const outcome = await late;

    const rows = await dbQuery(
      ds,
      `SELECT label FROM tx_spec_orders WHERE label LIKE $1 ORDER BY label`,
      [`${label}-%`],
    );
    expect(rows.map((row: { label: string }) => row.label)).toEqual([
      `${label}-in`,
    ]);
    expect(outcome).toBeInstanceOf(TransactionClosedError);
  },
);
