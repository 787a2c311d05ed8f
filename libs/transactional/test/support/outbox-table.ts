import { DataSource } from 'typeorm';
import { createOutboxMigration } from '../../src';
import { dbQuery, Queryable } from './db';
import { onMariaDb, testDataSourceOptions } from './env';

/**
 * Drops the outbox table `tableName` (if any) and creates it with `createOutboxMigration`, in the
 * run's database or in `database`.
 */
export async function createOutboxTable(
  tableName: string,
  database?: string,
): Promise<void> {
  const dataSource = new DataSource(testDataSourceOptions(database));
  await dataSource.initialize();
  try {
    await dataSource.query(
      onMariaDb
        ? `DROP TABLE IF EXISTS \`${tableName}\``
        : `DROP TABLE IF EXISTS "${tableName}"`,
    );
    const Migration = createOutboxMigration({ tableName });
    const runner = dataSource.createQueryRunner();
    try {
      await new Migration().up(runner);
    } finally {
      await runner.release();
    }
  } finally {
    await dataSource.destroy();
  }
}

/** Makes every pending row of `tableName` eligible for the relay now (grace or backoff over). */
export function makeOutboxRowsEligible(
  on: Queryable,
  tableName: string,
): Promise<unknown> {
  return dbQuery(
    on,
    `UPDATE ${tableName} SET available_at = clock_timestamp() WHERE dispatched_at IS NULL`,
  );
}

/**
 * Writes an outbox row directly, as an earlier version (or a hand-made fix) could have: for
 * rows that `add()` now refuses inside the transaction, to check what the relay does with them.
 */
export function insertOutboxRow(
  on: Queryable,
  tableName: string,
  row: {
    queue: string;
    id: string;
    jobName: string;
    data: unknown;
    opts: unknown;
  },
): Promise<unknown> {
  return dbQuery(
    on,
    `INSERT INTO ${tableName} (queue, id, job_name, data, opts, available_at)
     VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, clock_timestamp())`,
    [
      row.queue,
      row.id,
      row.jobName,
      JSON.stringify(row.data),
      JSON.stringify(row.opts),
    ],
  );
}
