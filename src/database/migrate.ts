import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import dataSource from './data-source';
import { runMigrationsLocked } from './migrator';

/**
 * Applies pending migrations and exits (docker-compose's one-shot `migrate` service, so that
 * API and worker replicas start on a migrated database instead of queueing on the lock).
 */
async function main() {
  await dataSource.initialize();
  try {
    await runMigrationsLocked(dataSource, new Logger('Migrate'));
  } finally {
    await dataSource.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
