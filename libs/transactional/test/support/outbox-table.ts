import { DataSource } from 'typeorm';
import { createOutboxMigration } from '../../src';
import { dbQuery, Queryable } from './db';
import { onMariaDb, testDataSourceOptions } from './env';

/** Drops the outbox table `tableName` (if any) and creates it with `createOutboxMigration`. */
export async function createOutboxTable(tableName: string): Promise<void> {
  const dataSource = new DataSource(testDataSourceOptions());
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
