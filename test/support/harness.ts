import type { INestApplication } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bull';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createApp } from '../../src/bootstrap';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import { DELIVERY_QUEUE } from '../../src/deliveries/delivery-queue';
import {
  ObservabilityConfig,
  loadObservabilityConfig,
} from '../../src/observability/observability-config';

/** Observability settings of an app whose logs are off. */
export const SILENT: ObservabilityConfig = {
  ...loadObservabilityConfig({}),
  logLevel: 'silent',
};

/** The admin token e2e apps are started with. */
export const ADMIN_TOKEN = 'e2e-admin-token';

/**
 * The encryption key e2e apps seal secrets with: fixed (every app of a run shares the test
 * database, so every app must open what another sealed) and test-only.
 */
export const E2E_ENCRYPTION_KEYS =
  'e2e:ZTJlLXRlc3Qta2V5LW5vdC1hLXNlY3JldC0zMmJ5dGU=';

/**
 * Redis key prefix of this test process: Bull queues of e2e apps never meet those of a
 * running docker compose stack or of a parallel test run on the same Redis.
 */
export const E2E_BULL_PREFIX = `e2e${process.env.TEST_DB_SUFFIX ?? ''}-${process.pid}`;

/** Database the e2e specs use (created by the jest global setup; `TEST_DB_SUFFIX` keeps parallel checkouts apart). */
export function e2eDatabaseUrl(): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/webhooks_test${process.env.TEST_DB_SUFFIX ?? ''}`;
  return url.toString();
}

/**
 * Redis the e2e specs use. The service's queue names are fixed, so parallel checkouts on one
 * Redis would take each other's jobs (and skip them: the delivery is in another database):
 * `TEST_DB_SUFFIX` picks a Redis database of its own (1-15), as it picks the Postgres one.
 */
export function e2eRedisUrl(): string {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  const suffix = process.env.TEST_DB_SUFFIX ?? '';
  if (!suffix) return 'redis://127.0.0.1:6379';
  let hash = 0;
  for (const char of suffix) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `redis://127.0.0.1:6379/${1 + (hash % 15)}`;
}

/** A config for e2e specs: loopback allowed, short retries, the test database. */
export function e2eConfig(overrides: Partial<AppConfig> = {}): AppConfig {
  return {
    ...loadConfig({
      ADMIN_TOKEN,
      SECRETS_ENCRYPTION_KEYS: E2E_ENCRYPTION_KEYS,
      DATABASE_URL: e2eDatabaseUrl(),
      REDIS_URL: e2eRedisUrl(),
      BULL_PREFIX: E2E_BULL_PREFIX,
      WEBHOOK_ALLOW_SUBNETS: '127.0.0.0/8,::1/128',
      WEBHOOK_RETRY_SCHEDULE_MS: '0,200,400,600',
      WEBHOOK_TIMEOUT_MS: '2000',
      RECONCILE_INTERVAL_MS: '1000',
      BULL_STALLED_INTERVAL_MS: '1000',
      PORT: '0',
      // NOTE: counted in Redis on every request, but high enough never to refuse a spec's calls.
      RATE_LIMIT_MAX: '100000',
      // NOTE: jest runs the specs' own work in the app's event loop; load shedding would refuse
      // their calls whenever a spec keeps it busy (load-shedding.e2e-spec.ts turns it on).
      API_SHED_LOOP_UTILIZATION: '0',
    }),
    ...overrides,
  };
}

/** A running service plus helpers to call it. */
export interface E2eApp {
  app: INestApplication;
  url: string;
  dataSource: DataSource;
  queue: Queue;
  /** Creates an account; resolves with its API key. */
  createAccount(name?: string): Promise<string>;
  close(): Promise<void>;
}

/** Boots the whole service (API + worker) on a free loopback port. */
export async function startE2eApp(
  overrides: Partial<AppConfig> = {},
  observability: ObservabilityConfig = SILENT,
): Promise<E2eApp> {
  const app = await createApp(e2eConfig(overrides), false, observability);
  await app.listen(0, '127.0.0.1');
  const url = await app.getUrl();
  const queue = app.get<Queue>(getQueueToken(DELIVERY_QUEUE), {
    strict: false,
  });
  return {
    app,
    url,
    dataSource: app.get(DataSource),
    queue,
    async createAccount(name = 'acme') {
      const res = await request(url)
        .post('/v1/accounts')
        .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        .send({ name })
        .expect(201);
      return res.body.apiKey;
    },
    async close() {
      await app.close();
    },
  };
}

/** Waits until `predicate` holds, polling; fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
