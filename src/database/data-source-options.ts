import type { DataSourceOptions } from 'typeorm';
import { ENTITIES } from './entities';
import { InitialSchema1764090000000 } from './migrations/1764090000000-initial-schema';
import { TransactionalOutbox1764090100000 } from './migrations/1764090100000-transactional-outbox';
import { TransactionalOutboxUpgrade1764090200000 } from './migrations/1764090200000-transactional-outbox-upgrade';
import { SealedIdempotentResponses1764090200000 } from './migrations/1764090200000-sealed-idempotent-responses';
import { EventPayloadAsSent1764090300000 } from './migrations/1764090300000-event-payload-as-sent';
import { ListAndQueueIndexes1764090400000 } from './migrations/1764090400000-list-and-queue-indexes';

/** Migrations in the order they apply. */
export const MIGRATIONS = [
  InitialSchema1764090000000,
  TransactionalOutbox1764090100000,
  TransactionalOutboxUpgrade1764090200000,
  SealedIdempotentResponses1764090200000,
  EventPayloadAsSent1764090300000,
  ListAndQueueIndexes1764090400000,
];

/** TypeORM options of the service's database; the schema comes from migrations only. */
export function dataSourceOptions(
  databaseUrl: string,
  poolSize = 20,
): DataSourceOptions {
  return {
    type: 'postgres',
    url: databaseUrl,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    synchronize: false,
    migrationsRun: false,
    extra: { max: poolSize },
  };
}
