import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `events.trip_id` (the trip filter of `GET /v1/events`), and an index for every query the
 * worker, the reconciler, the lists and retention run (see test/indexes.e2e-spec.ts):
 * - lists page on (created_at, id) per account, endpoint, event, status, type or trip;
 * - the reconciler scans due `pending` and lease-expired `sending` deliveries through two
 *   partial indexes, which hold only deliveries in flight (final ones are the bulk);
 * - retention deletes by age (events, attempts, idempotency keys).
 * NOTE: plain CREATE INDEX, inside the migration's transaction: on a large live table run
 * the statements with CONCURRENTLY by hand first (IF NOT EXISTS makes this a no-op then).
 */
export class ListAndQueueIndexes1764090400000 implements MigrationInterface {
  name = 'ListAndQueueIndexes1764090400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE "events" ADD COLUMN "trip_id" uuid REFERENCES "trips" ("id") ON DELETE SET NULL`,
    );
    await q.query(`
      UPDATE "events" e SET "trip_id" = t."id" FROM "trips" t
       WHERE e."type" LIKE 'trip.%' AND t."account_id" = e."account_id"
         AND t."id"::text = e."payload" -> 'trip' ->> 'id'`);
    const indexes: [string, string][] = [
      [
        'endpoints_account_created_id',
        'endpoints ("account_id", "created_at", "id")',
      ],
      [
        'events_account_created_id',
        'events ("account_id", "created_at", "id")',
      ],
      [
        'events_account_type_created_id',
        'events ("account_id", "type", "created_at", "id")',
      ],
      [
        'events_account_trip_created_id',
        'events ("account_id", "trip_id", "created_at", "id") WHERE "trip_id" IS NOT NULL',
      ],
      ['events_created', 'events ("created_at")'],
      [
        'deliveries_account_created_id',
        'deliveries ("account_id", "created_at", "id")',
      ],
      [
        'deliveries_account_status_created_id',
        'deliveries ("account_id", "status", "created_at", "id")',
      ],
      [
        'deliveries_endpoint_created_id',
        'deliveries ("endpoint_id", "created_at", "id")',
      ],
      [
        'deliveries_endpoint_status_created_id',
        'deliveries ("endpoint_id", "status", "created_at", "id")',
      ],
      [
        'deliveries_event_created_id',
        'deliveries ("event_id", "created_at", "id")',
      ],
      [
        'deliveries_pending_next',
        `deliveries ("next_attempt_at") WHERE "status" = 'pending'`,
      ],
      [
        'deliveries_sending_lease',
        `deliveries ("locked_until") WHERE "status" = 'sending'`,
      ],
      ['delivery_attempts_started', 'delivery_attempts ("started_at")'],
      ['idempotency_keys_created', 'idempotency_keys ("created_at")'],
    ];
    for (const [name, on] of indexes) {
      await q.query(`CREATE INDEX IF NOT EXISTS "${name}" ON ${on}`);
    }
    // Superseded by the indexes above (same leading columns, plus the tie-breaker).
    for (const name of [
      'endpoints_account_created',
      'events_account_created',
      'deliveries_event',
      'deliveries_status_next',
      'deliveries_endpoint_status_created',
    ]) {
      await q.query(`DROP INDEX IF EXISTS "${name}"`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX IF NOT EXISTS "endpoints_account_created" ON "endpoints" ("account_id", "created_at")`,
    );
    await q.query(
      `CREATE INDEX IF NOT EXISTS "events_account_created" ON "events" ("account_id", "created_at")`,
    );
    await q.query(
      `CREATE INDEX IF NOT EXISTS "deliveries_event" ON "deliveries" ("event_id")`,
    );
    await q.query(
      `CREATE INDEX IF NOT EXISTS "deliveries_status_next" ON "deliveries" ("status", "next_attempt_at")`,
    );
    await q.query(
      `CREATE INDEX IF NOT EXISTS "deliveries_endpoint_status_created" ON "deliveries" ("endpoint_id", "status", "created_at")`,
    );
    for (const name of [
      'endpoints_account_created_id',
      'events_account_created_id',
      'events_account_type_created_id',
      'events_account_trip_created_id',
      'events_created',
      'deliveries_account_created_id',
      'deliveries_account_status_created_id',
      'deliveries_endpoint_created_id',
      'deliveries_endpoint_status_created_id',
      'deliveries_event_created_id',
      'deliveries_pending_next',
      'deliveries_sending_lease',
      'delivery_attempts_started',
      'idempotency_keys_created',
    ]) {
      await q.query(`DROP INDEX IF EXISTS "${name}"`);
    }
    await q.query(`ALTER TABLE "events" DROP COLUMN "trip_id"`);
  }
}
