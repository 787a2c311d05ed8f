import { EncryptionKey, parseEncryptionKeys } from '../secrets/secret-box';
import { parseAllowSubnets } from '../webhooks-http/ssrf-guard';

/** Which parts of the service a process runs. */
export type ProcessRole = 'all' | 'api' | 'worker';

/** Everything the service reads from its environment, parsed and checked once at start-up. */
export interface AppConfig {
  role: ProcessRole;
  port: number;
  databaseUrl: string;
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
  /**
   * `GET /health/ready` answers 503 `lagging` when the oldest due delivery has waited longer
   * than this (ms): the workers do not keep up.
   */
  readyMaxBacklogAgeMs: number;
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
}

function int(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min = 1,
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

function prefix(raw: string | undefined): string {
  if (raw === undefined || raw === '') return 'bull';
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(raw)) {
    throw new Error(
      `BULL_PREFIX must be 1 to 64 letters, digits, "_", ".", ":" or "-", got "${raw}"`,
    );
  }
  return raw;
}

function schedule(raw: string | undefined): number[] | undefined {
  if (!raw) return undefined;
  const steps = raw.split(',').map((s) => Number(s.trim()));
  if (steps.length === 0 || steps.some((s) => !Number.isFinite(s) || s < 0)) {
    throw new Error(
      `WEBHOOK_RETRY_SCHEDULE_MS must be comma-separated ms values, got "${raw}"`,
    );
  }
  return steps;
}

/** The database URL alone (the migration CLI needs nothing else). */
export function databaseUrlFrom(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/webhooks';
}

function encryptionKeys(env: NodeJS.ProcessEnv): EncryptionKey[] {
  const keys = parseEncryptionKeys(env.SECRETS_ENCRYPTION_KEYS);
  if (keys.length === 0) {
    throw new Error(
      'SECRETS_ENCRYPTION_KEYS is required: endpoint signing secrets are stored encrypted with ' +
        'it. Set it to "<id>:<base64 of 32 random bytes>", e.g. ' +
        'SECRETS_ENCRYPTION_KEYS="k1:$(openssl rand -base64 32)"',
    );
  }
  return keys;
}

/** Reads the configuration; throws with the variable's name on bad values. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const role = (env.PROCESS_ROLE ?? 'all') as ProcessRole;
  if (!['all', 'api', 'worker'].includes(role)) {
    throw new Error(`PROCESS_ROLE must be all, api or worker, got "${role}"`);
  }
  const deliveryTimeoutMs = int(env, 'WEBHOOK_TIMEOUT_MS', 15_000);
  return {
    role,
    port: int(env, 'PORT', 3000, 0),
    databaseUrl: databaseUrlFrom(env),
    encryptionKeys: encryptionKeys(env),
    redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    bullPrefix: prefix(env.BULL_PREFIX),
    adminToken: env.ADMIN_TOKEN || undefined,
    allowSubnets: parseAllowSubnets(env.WEBHOOK_ALLOW_SUBNETS),
    retryScheduleMs: schedule(env.WEBHOOK_RETRY_SCHEDULE_MS),
    deliveryTimeoutMs,
    deliveryLeaseMarginMs: int(env, 'DELIVERY_LEASE_MARGIN_MS', 10_000),
    workerConcurrency: int(env, 'WORKER_CONCURRENCY', 20),
    perEndpointConcurrency: int(env, 'PER_ENDPOINT_CONCURRENCY', 4),
    endpointDisableAfterMs: int(
      env,
      'ENDPOINT_DISABLE_AFTER_MS',
      5 * 24 * 3600 * 1000,
    ),
    stalledIntervalMs: int(env, 'BULL_STALLED_INTERVAL_MS', 30_000),
    reconcileIntervalMs: int(env, 'RECONCILE_INTERVAL_MS', 30_000),
    readyMaxBacklogAgeMs: int(env, 'READY_MAX_BACKLOG_AGE_MS', 60_000),
    eventRetentionDays: int(env, 'EVENT_RETENTION_DAYS', 30),
    attemptRetentionDays: int(env, 'ATTEMPT_RETENTION_DAYS', 90),
    // NOTE: at least the 24 h during which a key replays its response.
    idempotencyRetentionHours: int(env, 'IDEMPOTENCY_RETENTION_HOURS', 24, 24),
    retentionIntervalMs: int(env, 'RETENTION_INTERVAL_MS', 3_600_000),
    retentionBatchSize: int(env, 'RETENTION_BATCH_SIZE', 500),
    outboxRelay: env.OUTBOX_RELAY !== 'off',
    outboxPollIntervalMs: int(env, 'OUTBOX_POLL_INTERVAL_MS', 1000),
    outboxGraceMs: int(env, 'OUTBOX_GRACE_MS', 5000),
    shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', 25_000),
  };
}

/** Injection token of the `AppConfig`. */
export const APP_CONFIG = 'APP_CONFIG';
