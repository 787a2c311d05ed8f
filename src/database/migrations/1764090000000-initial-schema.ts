import { MigrationInterface, QueryRunner } from 'typeorm';

/** Accounts, endpoints, trips, events, deliveries, attempts and idempotency keys. */
export class InitialSchema1764090000000 implements MigrationInterface {
  name = 'InitialSchema1764090000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "accounts" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "name" character varying NOT NULL,
      "api_key_hash" character varying NOT NULL UNIQUE,
      "api_key_prefix" character varying NOT NULL,
      "created_at" timestamptz NOT NULL DEFAULT now())`);
    await q.query(`CREATE TABLE "endpoints" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "account_id" uuid NOT NULL REFERENCES "accounts" ("id") ON DELETE CASCADE,
      "url" character varying NOT NULL,
      "description" text NOT NULL DEFAULT '',
      "event_types" text array,
      "secrets" jsonb NOT NULL,
      "disabled" boolean NOT NULL DEFAULT false,
      "disabled_reason" text,
      "failing_since" timestamptz,
      "created_at" timestamptz NOT NULL DEFAULT now(),
      "updated_at" timestamptz NOT NULL DEFAULT now())`);
    await q.query(
      `CREATE INDEX "endpoints_account_created" ON "endpoints" ("account_id", "created_at")`,
    );
    await q.query(`CREATE TABLE "trips" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "account_id" uuid NOT NULL REFERENCES "accounts" ("id") ON DELETE CASCADE,
      "reference" character varying NOT NULL,
      "origin" character varying NOT NULL,
      "destination" character varying NOT NULL,
      "planned_arrival" timestamptz NOT NULL,
      "expected_arrival" timestamptz NOT NULL,
      "status" text NOT NULL DEFAULT 'scheduled',
      "delay_minutes_total" integer NOT NULL DEFAULT 0,
      "created_at" timestamptz NOT NULL DEFAULT now(),
      "updated_at" timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT "trips_account_reference" UNIQUE ("account_id", "reference"))`);
    await q.query(`CREATE TABLE "trip_delays" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "trip_id" uuid NOT NULL REFERENCES "trips" ("id") ON DELETE CASCADE,
      "minutes" integer NOT NULL,
      "reason" character varying NOT NULL,
      "created_at" timestamptz NOT NULL DEFAULT now())`);
    await q.query(
      `CREATE INDEX "trip_delays_trip_created" ON "trip_delays" ("trip_id", "created_at")`,
    );
    await q.query(`CREATE TABLE "events" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "account_id" uuid NOT NULL REFERENCES "accounts" ("id") ON DELETE CASCADE,
      "type" character varying NOT NULL,
      "payload" jsonb NOT NULL,
      "created_at" timestamptz NOT NULL DEFAULT now())`);
    await q.query(
      `CREATE INDEX "events_account_created" ON "events" ("account_id", "created_at")`,
    );
    await q.query(`CREATE TABLE "deliveries" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "account_id" uuid NOT NULL REFERENCES "accounts" ("id") ON DELETE CASCADE,
      "event_id" uuid NOT NULL REFERENCES "events" ("id") ON DELETE CASCADE,
      "endpoint_id" uuid NOT NULL REFERENCES "endpoints" ("id") ON DELETE CASCADE,
      "status" text NOT NULL DEFAULT 'pending',
      "attempt_count" integer NOT NULL DEFAULT 0,
      "next_attempt_at" timestamptz,
      "locked_until" timestamptz,
      "last_status_code" integer,
      "last_error" text,
      "created_at" timestamptz NOT NULL DEFAULT now(),
      "updated_at" timestamptz NOT NULL DEFAULT now(),
      "completed_at" timestamptz)`);
    await q.query(
      `CREATE INDEX "deliveries_event" ON "deliveries" ("event_id")`,
    );
    await q.query(
      `CREATE INDEX "deliveries_status_next" ON "deliveries" ("status", "next_attempt_at")`,
    );
    await q.query(
      `CREATE INDEX "deliveries_endpoint_status_created" ON "deliveries" ("endpoint_id", "status", "created_at")`,
    );
    await q.query(`CREATE TABLE "delivery_attempts" (
      "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
      "delivery_id" uuid NOT NULL REFERENCES "deliveries" ("id") ON DELETE CASCADE,
      "number" integer NOT NULL,
      "trigger" text NOT NULL,
      "status" text NOT NULL DEFAULT 'in_progress',
      "status_code" integer,
      "duration_ms" integer,
      "error_class" text,
      "error_message" text,
      "response_body" text,
      "response_truncated" boolean NOT NULL DEFAULT false,
      "next_attempt_at" timestamptz,
      "started_at" timestamptz NOT NULL,
      "finished_at" timestamptz)`);
    await q.query(
      `CREATE INDEX "delivery_attempts_delivery" ON "delivery_attempts" ("delivery_id", "number")`,
    );
    await q.query(`CREATE TABLE "idempotency_keys" (
      "account_id" text NOT NULL,
      "key" character varying NOT NULL,
      "request_hash" character varying NOT NULL,
      "response_status" integer,
      "response_body" jsonb,
      "created_at" timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY ("account_id", "key"))`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of [
      'idempotency_keys',
      'delivery_attempts',
      'deliveries',
      'events',
      'trip_delays',
      'trips',
      'endpoints',
      'accounts',
    ]) {
      await q.query(`DROP TABLE "${table}"`);
    }
  }
}
