import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Event payloads are stored as `json`, which keeps the text exactly as accepted (jsonb
 * reorders keys and re-spells numbers), so that they are delivered byte for byte.
 */
export class EventPayloadAsSent1764090300000 implements MigrationInterface {
  name = 'EventPayloadAsSent1764090300000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE "events" ALTER COLUMN "payload" TYPE json USING "payload"::json`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE "events" ALTER COLUMN "payload" TYPE jsonb USING "payload"::jsonb`,
    );
  }
}
