/** Settings and names shared by the orchestrator and the server processes. */

/** `TEST_DB_SUFFIX` keeps the databases, Redis db and Bull prefixes of parallel checkouts apart. */
const SUFFIX = process.env.TEST_DB_SUFFIX ?? '';

/** Database the benchmark creates if missing; each run uses tables of its own in it. */
export const DATABASE = `transactional_bench${SUFFIX.toLowerCase()}`;

/** URL of a database on Postgres (`DATABASE_URL` overrides host and credentials). */
export function databaseUrl(database = DATABASE): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/${database}`;
  return url.toString();
}

/** Redis URL: `REDIS_URL`, else db 0, or with `TEST_DB_SUFFIX` a db of its own (1-15) as the specs pick. */
export function redisUrl(): string {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  if (!SUFFIX) return 'redis://127.0.0.1:6379';
  let hash = 0;
  for (const char of SUFFIX) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `redis://127.0.0.1:6379/${1 + (hash % 15)}`;
}

/** Bull key prefix of every benchmark queue. */
export const BULL_PREFIX = `bench${SUFFIX}`;

/** Names one mode of one run uses: its table, its queue, its outbox table. */
export function namesOf(runId: string, mode: string) {
  const base = `rp_${runId}_${mode}`;
  return {
    table: `${base}_rows`,
    queue: `rp-${runId}-${mode}`,
    outboxTable: `${base}_outbox`,
  };
}

/** DDL of a mode's table (the servers run with `synchronize: false`). */
export function createTableSql(table: string): string {
  return (
    `CREATE TABLE "${table}" (` +
    `"id" SERIAL PRIMARY KEY, ` +
    `"label" character varying NOT NULL, ` +
    `"payload" jsonb NOT NULL, ` +
    `"createdAt" TIMESTAMP NOT NULL DEFAULT now())`
  );
}

/** Messages from a server process to the orchestrator. */
export type ServerMessage =
  | { type: 'ready'; port: number }
  | { type: 'error'; message: string }
  /** The process's CPU time so far (`process.cpuUsage()`), in microseconds. */
  | { type: 'cpu'; user: number; system: number }
  /** Commit-to-enqueued times (ms) recorded since the probe was switched on. */
  | {
      type: 'probe';
      ms: number[];
      /** The event loop's delay while the probe was on (ms): p50, p99, max. */
      loopDelayMs: { p50: number; p99: number; max: number };
    }
  | {
      type: 'stopped';
      /** `data.id` of every job in the mode's Bull queue, read before it is obliterated. */
      jobIds: number[];
      /** Bull's job counts by state, read at the same time. */
      jobCounts: Record<string, number>;
      /** Library counters (ours only): failed flushes and hook failures must be 0. */
      stats?: Record<string, unknown>;
    };

/** Messages from the orchestrator to a server process. */
export type OrchestratorMessage =
  | { type: 'cpu' }
  | { type: 'probe'; on: boolean }
  | { type: 'stop' };
