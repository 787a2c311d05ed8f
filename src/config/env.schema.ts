import { z } from 'zod';
import { parseEncryptionKeys } from '../secrets/secret-box';
import { parseAllowSubnets } from '../webhooks-http/ssrf-guard';
import {
  enumVar,
  intVar,
  optionalIntVar,
  optionalHttpUrlVar,
  optionalPortVar,
  parsedVar,
  urlVar,
} from './env-fields';

/** Default `DATABASE_URL` (the migration CLI uses it too). */
export const DEFAULT_DATABASE_URL =
  'postgres://postgres@127.0.0.1:5432/webhooks';

function schedule(raw: string | undefined): number[] | undefined {
  if (!raw) return undefined;
  const steps = raw.split(',').map((s) => Number(s.trim()));
  if (steps.some((s) => !Number.isFinite(s) || s < 0)) {
    throw new Error(`must be comma-separated ms values, got "${raw}"`);
  }
  return steps;
}

function encryptionKeys(raw: string | undefined) {
  const keys = parseEncryptionKeys(raw);
  if (keys.length === 0) {
    throw new Error(
      'SECRETS_ENCRYPTION_KEYS is required: endpoint signing secrets are stored encrypted with ' +
        'it. Set it to "<id>:<base64 of 32 random bytes>", e.g. ' +
        'SECRETS_ENCRYPTION_KEYS="k1:$(openssl rand -base64 32)"',
    );
  }
  return keys;
}

function prefix(raw: string | undefined): string {
  if (raw === undefined || raw === '') return 'bull';
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(raw)) {
    throw new Error(
      `must be 1 to 64 letters, digits, "_", ".", ":" or "-", got "${raw}"`,
    );
  }
  return raw;
}

function adminToken(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  // NOTE: the value is never echoed: it is a secret, even when it is a bad one.
  if (raw.length < 12 || /\s/.test(raw)) {
    throw new Error(
      'must be at least 12 characters without spaces (e.g. $(openssl rand -hex 32)), or unset to disable account creation',
    );
  }
  return raw;
}

/**
 * Every environment variable the service reads, with its check and default. Keys are the
 * variables' names; the README's configuration table lists the same ones.
 */
export const envSchema = z.object({
  PROCESS_ROLE: enumVar(['all', 'api', 'worker'] as const, 'all'),
  PORT: intVar(3000, 0, 65535),
  HEALTH_PORT: optionalPortVar(),
  DATABASE_URL: urlVar(['postgres', 'postgresql'], DEFAULT_DATABASE_URL),
  DATABASE_PREPARED_STATEMENTS: enumVar(['on', 'off'] as const, 'on'),
  REDIS_URL: urlVar(['redis', 'rediss'], 'redis://127.0.0.1:6379'),
  SECRETS_ENCRYPTION_KEYS: parsedVar(encryptionKeys),
  ADMIN_TOKEN: parsedVar(adminToken),
  BULL_PREFIX: parsedVar(prefix),
  WEBHOOK_ALLOW_SUBNETS: parsedVar(parseAllowSubnets),
  WEBHOOK_RETRY_SCHEDULE_MS: parsedVar(schedule),
  WEBHOOK_TIMEOUT_MS: intVar(15_000),
  DELIVERY_LEASE_MARGIN_MS: intVar(10_000),
  WORKER_CONCURRENCY: intVar(20),
  PER_ENDPOINT_CONCURRENCY: intVar(4),
  ENDPOINT_DISABLE_AFTER_MS: intVar(5 * 24 * 3600 * 1000),
  BULL_STALLED_INTERVAL_MS: intVar(30_000),
  RECONCILE_INTERVAL_MS: intVar(30_000),
  EVENT_RETENTION_DAYS: intVar(30),
  ATTEMPT_RETENTION_DAYS: intVar(90),
  // NOTE: at least the 24 h during which a key replays its response.
  IDEMPOTENCY_RETENTION_HOURS: intVar(24, 24),
  RETENTION_INTERVAL_MS: intVar(3_600_000),
  RETENTION_BATCH_SIZE: intVar(500),
  OUTBOX_RELAY: enumVar(['on', 'off'] as const, 'on'),
  OUTBOX_POLL_INTERVAL_MS: intVar(1000),
  OUTBOX_GRACE_MS: intVar(5000),
  SHUTDOWN_TIMEOUT_MS: intVar(25_000),
  // Read before the schema runs (see read-config.ts); listed so that it is a known variable.
  ENV_FILE: z.string().optional(),
  HEALTH_CHECK_TIMEOUT_MS: intVar(1000),
  HEALTH_OUTBOX_MAX_AGE_MS: intVar(60_000),
  HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS: intVar(60_000),
  // NOTE: unset, it depends on PROCESS_ROLE (app-config.ts): on in `all`, off otherwise.
  API_SHED_LOOP_UTILIZATION: optionalIntVar(0, 100),
  RATE_LIMIT_MAX: intVar(600, 0),
  RATE_LIMIT_WINDOW_MS: intVar(60_000),
  // NOTE: observability (observability/observability-config.ts reads them into its own config);
  // checked here too, so that a bad one is named with all the others before anything starts.
  LOG_LEVEL: enumVar(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
    'info',
  ),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalHttpUrlVar(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalHttpUrlVar(),
  OTEL_SERVICE_NAME: z.string().optional(),
  WEBHOOK_TRACEPARENT: enumVar(['on', 'off'] as const, 'off'),
});

/** The environment after the schema: every variable checked and converted. */
export type ParsedEnv = z.infer<typeof envSchema>;

/** Names of every variable the service reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/**
 * Variables without which the service refuses to start. (`ADMIN_TOKEN` is optional for the
 * service, which then refuses account creation; docker-compose requires it.)
 */
export const REQUIRED_VARIABLES: readonly string[] = [
  'SECRETS_ENCRYPTION_KEYS',
];
