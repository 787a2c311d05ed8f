import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Stored idempotent responses become text: a `SecretBox`-sealed value (they can carry API
 * keys and signing secrets). Rows stored in clear by older versions are sealed at start-up
 * by `SecretsSealer`, which needs the encryption key this migration does not have.
 */
export class SealedIdempotentResponses1764090200000
  implements MigrationInterface
{
  name = 'SealedIdempotentResponses1764090200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE "idempotency_keys" ALTER COLUMN "response_body" TYPE text USING "response_body"::text`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    // Sealed values are not JSON: they cannot go back into a jsonb column.
    await q.query(
      `UPDATE "idempotency_keys" SET "response_body" = NULL WHERE "response_body" LIKE 'v1.%'`,
    );
    await q.query(
      `ALTER TABLE "idempotency_keys" ALTER COLUMN "response_body" TYPE jsonb USING "response_body"::jsonb`,
    );
  }
}
