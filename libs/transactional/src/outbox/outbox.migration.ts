import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dialectOf, quoteIdentifier } from '../dialect/sql-dialect';
import {
  OutboxOptions,
  qualifiedTable,
  resolveOutboxOptions,
  ResolvedOutboxOptions,
} from './outbox.options';

/** What the outbox migrations need to know: where the table is, and the default grace. */
export type OutboxMigrationOptions = Pick<
  OutboxOptions,
  'tableName' | 'schema'
> & {
  /**
   * Grace period of rows written without an `available_at` (by a version of the library older
   * than this table shape, during a rolling upgrade), and of the pending rows an upgrade finds.
   * Use the relay's `graceMs`. Default: `5000` ms.
   */
  graceMs?: number;
};

/** SQL names of the table and its indexes. */
function names(options: OutboxMigrationOptions) {
  const resolved: ResolvedOutboxOptions = resolveOutboxOptions(options);
  const index = (suffix: string) =>
    `${resolved.schema ? `"${resolved.schema}".` : ''}"${resolved.tableName}_${suffix}"`;
  return {
    resolved,
    table: qualifiedTable(resolved),
    /** Unqualified index name (for CREATE INDEX) and qualified one (for DROP INDEX). */
    pending: [`"${resolved.tableName}_pending"`, index('pending')],
    dispatched: `"${resolved.tableName}_dispatched"`,
    graceSql: `make_interval(secs => ${Math.max(0, options.graceMs ?? 5000) / 1000})`,
  };
}

/**
 * A TypeORM migration class that creates the outbox table, for the user's migration list:
 *
 * ```ts
 * export class CreateOutbox1764100000000 extends createOutboxMigration({ tableName: 'outbox' }) {}
 * ```
 * The class name must end with a timestamp, as TypeORM requires of every migration. Rows are
 * keyed by queue and Bull job id (a repeatable job's row has a random id); `available_at` is when
 * the relay may take a row (the grace period after the commit, a relay's lease, or the backoff
 * after a failed relay attempt). A table made by an earlier version of this migration needs
 * `createOutboxUpgradeMigration()`.
 */
export function createOutboxMigration(
  options: OutboxMigrationOptions = {},
): new () => MigrationInterface {
  const { resolved, table, pending, dispatched, graceSql } = names(options);
  return class OutboxMigration implements MigrationInterface {
    async up(queryRunner: QueryRunner): Promise<void> {
      if (dialectOf(queryRunner.connection) === 'mysql') {
        return createMysqlOutbox(queryRunner, options);
      }
      if (resolved.schema) {
        await queryRunner.query(
          `CREATE SCHEMA IF NOT EXISTS "${resolved.schema}"`,
        );
      }
      await queryRunner.query(`CREATE TABLE ${table} (
        "id" text NOT NULL,
        "queue" text NOT NULL,
        "job_name" text NOT NULL,
        "data" jsonb NOT NULL,
        "opts" jsonb NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
        "available_at" timestamptz NOT NULL DEFAULT clock_timestamp() + ${graceSql},
        "dispatched_at" timestamptz,
        "relay_attempts" integer NOT NULL DEFAULT 0,
        "last_error" text,
        PRIMARY KEY ("queue", "id"))`);
      await queryRunner.query(
        `CREATE INDEX ${pending[0]} ON ${table} ("available_at") WHERE "dispatched_at" IS NULL`,
      );
      await queryRunner.query(
        `CREATE INDEX ${dispatched} ON ${table} ("dispatched_at") WHERE "dispatched_at" IS NOT NULL`,
      );
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      await queryRunner.query(
        `DROP TABLE ${
          dialectOf(queryRunner.connection) === 'mysql'
            ? qualifiedTable(resolved, 'mysql')
            : table
        }`,
      );
    }
  };
}

/**
 * A TypeORM migration class that brings an outbox table made by an earlier
 * `createOutboxMigration()` (primary key `id`, eligibility counted from `created_at`) to the
 * current shape: adds `available_at` (pending rows become eligible `graceMs` after their
 * `created_at`, as before), keys rows by `("queue", "id")`, and indexes pending rows by
 * `available_at`. Does nothing to a table that already has the current shape, so it can follow
 * `createOutboxMigration()` in a list that new installations run from the start:
 *
 * ```ts
 * export class UpgradeOutbox1764200000000 extends createOutboxUpgradeMigration({ tableName: 'outbox' }) {}
 * ```
 * Run it before deploying this version. Its `down()` restores the earlier shape (it fails if
 * two queues hold rows with the same id).
 */
export function createOutboxUpgradeMigration(
  options: OutboxMigrationOptions = {},
): new () => MigrationInterface {
  const { table, pending, graceSql } = names(options);
  return class OutboxUpgradeMigration implements MigrationInterface {
    async up(queryRunner: QueryRunner): Promise<void> {
      // NOTE: MySQL/MariaDB support came with the current shape: there is nothing to upgrade.
      if (dialectOf(queryRunner.connection) === 'mysql') return;
      const [{ present }]: { present: boolean }[] = await queryRunner.query(
        `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass
           AND attname = 'available_at' AND NOT attisdropped) AS present`,
        [table],
      );
      if (present && (await primaryKey(queryRunner, table)).length === 2) {
        return;
      }
      await queryRunner.query(
        `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS "available_at" timestamptz`,
      );
      await queryRunner.query(
        `UPDATE ${table} SET "available_at" = "created_at" + ${graceSql} WHERE "available_at" IS NULL`,
      );
      await queryRunner.query(
        `ALTER TABLE ${table}
           ALTER COLUMN "available_at" SET DEFAULT clock_timestamp() + ${graceSql},
           ALTER COLUMN "available_at" SET NOT NULL`,
      );
      await replacePrimaryKey(queryRunner, table, '"queue", "id"');
      await queryRunner.query(`DROP INDEX IF EXISTS ${pending[1]}`);
      await queryRunner.query(
        `CREATE INDEX ${pending[0]} ON ${table} ("available_at") WHERE "dispatched_at" IS NULL`,
      );
    }

    async down(queryRunner: QueryRunner): Promise<void> {
      if (dialectOf(queryRunner.connection) === 'mysql') return;
      await replacePrimaryKey(queryRunner, table, '"id"');
      await queryRunner.query(`DROP INDEX IF EXISTS ${pending[1]}`);
      await queryRunner.query(
        `ALTER TABLE ${table} DROP COLUMN IF EXISTS "available_at"`,
      );
      await queryRunner.query(
        `CREATE INDEX ${pending[0]} ON ${table} ("created_at") WHERE "dispatched_at" IS NULL`,
      );
    }
  };
}

/** Names of the primary key columns of `table`, in order. */
async function primaryKey(
  queryRunner: QueryRunner,
  table: string,
): Promise<string[]> {
  const rows: { name: string }[] = await queryRunner.query(
    `SELECT a.attname AS name
       FROM pg_index i
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY k.n`,
    [table],
  );
  return rows.map((row) => row.name);
}

/** Drops the primary key of `table` (whatever its name) and adds one on `columns`. */
async function replacePrimaryKey(
  queryRunner: QueryRunner,
  table: string,
  columns: string,
): Promise<void> {
  const [constraint]: { name: string }[] = await queryRunner.query(
    `SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`,
    [table],
  );
  if (constraint) {
    await queryRunner.query(
      `ALTER TABLE ${table} DROP CONSTRAINT "${constraint.name}"`,
    );
  }
  await queryRunner.query(`ALTER TABLE ${table} ADD PRIMARY KEY (${columns})`);
}

/**
 * The outbox table on MySQL 8 / MariaDB 10.6+: times in UTC as `DATETIME(6)` (µs, no 2038
 * limit, no session time zone involved), JSON columns (MariaDB: `LONGTEXT` checked by
 * `JSON_VALID`), and a plain index on `(dispatched_at, available_at)` in place of Postgres'
 * partial indexes.
 */
async function createMysqlOutbox(
  queryRunner: QueryRunner,
  options: OutboxMigrationOptions,
): Promise<void> {
  const resolved = resolveOutboxOptions(options);
  const table = qualifiedTable(resolved, 'mysql');
  const index = (suffix: string) =>
    quoteIdentifier('mysql', `${resolved.tableName}_${suffix}`);
  const graceUs = Math.round(Math.max(0, options.graceMs ?? 5000) * 1000);
  if (resolved.schema) {
    await queryRunner.query(
      `CREATE DATABASE IF NOT EXISTS ${quoteIdentifier('mysql', resolved.schema)}`,
    );
  }
  await queryRunner.query(`CREATE TABLE ${table} (
    \`id\` varchar(255) NOT NULL,
    \`queue\` varchar(255) NOT NULL,
    \`job_name\` text NOT NULL,
    \`data\` json NOT NULL,
    \`opts\` json NOT NULL,
    \`created_at\` datetime(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    \`available_at\` datetime(6) NOT NULL
      DEFAULT (UTC_TIMESTAMP(6) + INTERVAL ${graceUs} MICROSECOND),
    \`dispatched_at\` datetime(6) NULL,
    \`relay_attempts\` int NOT NULL DEFAULT 0,
    \`last_error\` text NULL,
    PRIMARY KEY (\`queue\`, \`id\`),
    KEY ${index('pending')} (\`dispatched_at\`, \`available_at\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
}
