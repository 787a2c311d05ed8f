import type { EncryptionKey } from '../secrets/secret-box';
import { DEFAULT_DATABASE_URL, envSchema, ParsedEnv } from './env.schema';

/** Which parts of the service a process runs. */
export type ProcessRole = 'all' | 'api' | 'worker';

/** Everything the service reads from its environment, parsed and checked once at start-up. */
export interface AppConfig {
  role: ProcessRole;
  /** HTTP port of the API (`PORT`); `all` and `api` processes serve health checks on it. */
  port: number;
  /** Port a worker-only process serves its health checks on (`HEALTH_PORT`); none if unset. */
  healthPort?: number;
  databaseUrl: string;
  /**
   * The delivery path's hottest statements run as named prepared statements
   * (`DATABASE_PREPARED_STATEMENTS`); off for a pooler that does not keep them.
   */
  preparedStatements: boolean;
  redisUrl: string;
  /**
   * AES-256 keys for secrets at rest (`SECRETS_ENCRYPTION_KEYS`); the first encrypts, all
   * decrypt. Required: the service refuses to start without one.
   */
  encryptionKeys: EncryptionKey[];
  /** Bearer token that may create accounts; account creation is refused while unset. */
  adminToken?: string;
  /**
   * Prefix of every Redis key the service writes (Bull's `prefix`, the endpoint limiter):
   * deployments, or test runs, that share a Redis but not a database must not share it.
   */
  bullPrefix: string;
  /** CIDR subnets webhook URLs may resolve into despite the SSRF policy. */
  allowSubnets: string[];
  /** Retry schedule, ms from the previous attempt; its length is the number of attempts. */
  retryScheduleMs?: number[];
  /** Whole-exchange timeout of one delivery attempt. */
  deliveryTimeoutMs: number;
  /**
   * How long past the request timeout a sending worker owns a delivery; after that a worker
   * that died is presumed dead and the delivery is sent again.
   */
  deliveryLeaseMarginMs: number;
  /** Deliveries one worker process sends at once. */
  workerConcurrency: number;
  /** Deliveries in flight to one endpoint across all workers. */
  perEndpointConcurrency: number;
  /** An endpoint that has only failed for this long is disabled. */
  endpointDisableAfterMs: number;
  /** Bull's stalled-job check interval (a killed worker's job is retried after it). */
  stalledIntervalMs: number;
  /** How often the reconciler re-enqueues deliveries whose job was lost. */
  reconcileIntervalMs: number;
  /** Events (with their deliveries and attempts) older than this are deleted. */
  eventRetentionDays: number;
  /** Attempts (with their stored responses) older than this are deleted. */
  attemptRetentionDays: number;
  /** Idempotency keys (with their sealed responses) older than this are deleted. */
  idempotencyRetentionHours: number;
  /** How often retention runs (worker processes). */
  retentionIntervalMs: number;
  /** Rows one retention statement deletes at most (one short transaction each). */
  retentionBatchSize: number;
  /** Run the outbox relay in this process. */
  outboxRelay: boolean;
  /** Outbox relay poll interval. */
  outboxPollIntervalMs: number;
  /** Age an outbox row must reach before the relay dispatches it. */
  outboxGraceMs: number;
  /**
   * How long a stopping process (SIGTERM, SIGINT) waits for its requests, delivery jobs and
   * transactions in flight before it closes its connections anyway.
   */
  shutdownTimeoutMs: number;
  /** Timeout of each dependency check of `GET /health/ready` (Postgres, Redis). */
  healthCheckTimeoutMs: number;
  /** `GET /health/ready` fails when the oldest undispatched outbox row is older than this. */
  healthOutboxMaxAgeMs: number;
  /**
   * `/health/ready` reports `deliveryBacklog.lagging` while the oldest due delivery has waited
   * longer than this (ms): the workers do not keep up.
   */
  healthDeliveryBacklogMaxAgeMs: number;
  /**
   * Routes that create events answer 503 (`Retry-After`) while this process's event loop is
   * busier than this (%, in each of two 250 ms windows); 0 turns it off. Unset: on
   * ({@link DEFAULT_SHED_LOOP_UTILIZATION}) when the API shares its process with the worker
   * (`PROCESS_ROLE=all`), off otherwise.
   */
  shedLoopUtilization: number;
  /** Requests per account (API key) per window, across every API process; 0 turns it off. */
  rateLimit: { limit: number; windowMs: number };
}

/**
 * `API_SHED_LOOP_UTILIZATION` of a process running the API and the worker (`all`): an event
 * loop busy this share (%) of the time has more work than CPU, and its deliveries wait.
 */
export const DEFAULT_SHED_LOOP_UTILIZATION = 90;

/** The configuration is invalid: `problems` names every bad or missing variable. */
export class ConfigValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}); ` +
        `fix the environment (or .env) and start again:\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'ConfigValidationError';
  }
}

/** The database URL alone (the migration CLI needs nothing else). */
export function databaseUrlFrom(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL || DEFAULT_DATABASE_URL;
}

/** Maps the checked environment onto the service's configuration. */
function toAppConfig(env: ParsedEnv): AppConfig {
  return {
    role: env.PROCESS_ROLE,
    port: env.PORT,
    healthPort: env.HEALTH_PORT,
    databaseUrl: env.DATABASE_URL,
    preparedStatements: env.DATABASE_PREPARED_STATEMENTS === 'on',
    encryptionKeys: env.SECRETS_ENCRYPTION_KEYS,
    redisUrl: env.REDIS_URL,
    bullPrefix: env.BULL_PREFIX,
    adminToken: env.ADMIN_TOKEN,
    allowSubnets: env.WEBHOOK_ALLOW_SUBNETS,
    retryScheduleMs: env.WEBHOOK_RETRY_SCHEDULE_MS,
    deliveryTimeoutMs: env.WEBHOOK_TIMEOUT_MS,
    deliveryLeaseMarginMs: env.DELIVERY_LEASE_MARGIN_MS,
    workerConcurrency: env.WORKER_CONCURRENCY,
    perEndpointConcurrency: env.PER_ENDPOINT_CONCURRENCY,
    endpointDisableAfterMs: env.ENDPOINT_DISABLE_AFTER_MS,
    stalledIntervalMs: env.BULL_STALLED_INTERVAL_MS,
    reconcileIntervalMs: env.RECONCILE_INTERVAL_MS,
    eventRetentionDays: env.EVENT_RETENTION_DAYS,
    attemptRetentionDays: env.ATTEMPT_RETENTION_DAYS,
    idempotencyRetentionHours: env.IDEMPOTENCY_RETENTION_HOURS,
    retentionIntervalMs: env.RETENTION_INTERVAL_MS,
    retentionBatchSize: env.RETENTION_BATCH_SIZE,
    outboxRelay: env.OUTBOX_RELAY === 'on',
    outboxPollIntervalMs: env.OUTBOX_POLL_INTERVAL_MS,
    outboxGraceMs: env.OUTBOX_GRACE_MS,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    healthCheckTimeoutMs: env.HEALTH_CHECK_TIMEOUT_MS,
    healthOutboxMaxAgeMs: env.HEALTH_OUTBOX_MAX_AGE_MS,
    healthDeliveryBacklogMaxAgeMs: env.HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS,
    shedLoopUtilization:
      env.API_SHED_LOOP_UTILIZATION ??
      (env.PROCESS_ROLE === 'all' ? DEFAULT_SHED_LOOP_UTILIZATION : 0),
    rateLimit: {
      limit: env.RATE_LIMIT_MAX,
      windowMs: env.RATE_LIMIT_WINDOW_MS,
    },
  };
}

/**
 * Reads the configuration through the schema (`env.schema.ts`); throws a
 * `ConfigValidationError` naming every bad or missing variable at once.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    throw new ConfigValidationError(
      result.error.issues.map(
        (issue) =>
          `${issue.path.join('.') || '(environment)'}: ${issue.message}`,
      ),
    );
  }
  return toAppConfig(result.data);
}

/** Injection token of the `AppConfig`. */
export const APP_CONFIG = 'APP_CONFIG';
