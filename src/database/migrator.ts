import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** Arbitrary key of the advisory lock that serialises migrations across processes. */
const MIGRATION_LOCK_KEY = 7_240_531;

/**
 * Applies pending migrations at start-up. Several processes may start at once (API and
 * workers): a Postgres advisory lock lets one migrate while the others wait.
 */
@Injectable()
export class Migrator implements OnModuleInit {
  private readonly logger = new Logger(Migrator.name);

  constructor(private readonly dataSource: DataSource) {}

  async onModuleInit(): Promise<void> {
    await runMigrationsLocked(this.dataSource, this.logger);
  }
}

/** Runs pending migrations while holding the migration advisory lock. */
export async function runMigrationsLocked(
  dataSource: DataSource,
  logger?: Logger,
) {
  const lock = dataSource.createQueryRunner();
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    const applied = await dataSource.runMigrations({ transaction: 'all' });
    for (const migration of applied)
      logger?.log(`applied migration ${migration.name}`);
  } finally {
    await lock
      .query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
      .catch(() => undefined);
    await lock.release();
  }
}
