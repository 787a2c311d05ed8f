import type { MigrationInterface, QueryRunner } from 'typeorm';
import {
  OutboxOptions,
  qualifiedTable,
  resolveOutboxOptions,
} from './outbox.options';

/**
 * A TypeORM migration class that creates the outbox table, for the user's migration list:
 *
 * ```ts
 * export class CreateOutbox1764100000000 extends createOutboxMigration({ tableName: 'outbox' }) {}
 * ```
 * The class name must end with a timestamp, as TypeORM requires of every migration.
 */
export function createOutboxMigration(
  options: Pick<OutboxOptions, 'tableName' | 'schema'> = {},
): new () => MigrationInterface {
  const resolved = resolveOutboxOptions(options);
  const table = qualifiedTable(resolved);
  const index = (suffix: string) => `"${resolved.tableName}_${suffix}"`;
  return class OutboxMigration implements MigrationInterface {
    async up(queryRunner: QueryRunner): Promise<void> {
      if (resolved.schema) {
        await queryRunner.query(
          `CREATE SCHEMA IF NOT EXISTS "${resolved.schema}"`,
        );
      }
      await queryRunner.query(`CREATE TABLE ${table} (
        "id" text PRIMARY KEY,
        "queue" text NOT NULL,
        "job_name" text NOT NULL,
        "data" jsonb NOT NULL,
        "opts" jsonb NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
        "dispatched_at" timestamptz,
        "relay_attempts" integer NOT NULL DEFAULT 0,
        "last_error" text)`);
      await queryRunner.query(
        `CREATE INDEX ${index('pending')} ON ${table} ("created_at") WHERE "dispatched_at" IS NULL`,
      );
      await queryRunner.query(
        `CREATE INDEX ${index('dispatched')} ON ${table} ("dispatched_at") WHERE "dispatched_at" IS NOT NULL`,
      );
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query(`DROP TABLE ${table}`);
    }
  };
}
