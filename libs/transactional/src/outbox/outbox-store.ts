import { TransactionalError } from '../errors/transactional.error';
import type { EntityManager } from 'typeorm';
import type { LeadingStatement } from '../transaction-driver';
import type { SqlDialect } from '../dialect/sql-dialect';

/** Identifies one outbox row. */
export interface OutboxRowKey {
  /** Bull queue name. */
  queue: string;
  /**
   * Unique to one add: its Bull job id when that was generated (a fresh UUID), else a random
   * id (the job id the caller chose, if any, is in `opts.jobId`; rows written before that
   * carry it here).
   */
  id: string;
}

/** One job as stored in the outbox. */
export interface OutboxRow extends OutboxRowKey {
  jobName: string;
  data: unknown;
  /** Options for Bull (`jobId` included when Bull must get one). */
  opts: Record<string, unknown>;
}

/** A row a relay claimed: `lease` is the `available_at` its claim set, as text. */
export interface ClaimedOutboxRow extends OutboxRow {
  lease: string;
  /**
   * Why the row's stored data or options cannot be read (text the database took as JSON that
   * `JSON.parse` refuses): the relay records it as the row's failure, and the row backs off.
   */
  invalid?: string;
}

/** A pending row whose relay attempts failed, as `OutboxStats.lastError` shows it. */
export interface OutboxRowError extends OutboxRowKey {
  /** Failed relay attempts. */
  attempts: number;
  /** The error of the last one. */
  message: string;
}

/** What the outbox holds now, for health checks and metrics. */
export interface OutboxStats {
  /** Rows not yet marked dispatched. */
  pending: number;
  /** Dispatched rows still kept (until the retention period ends). */
  dispatched: number;
  /** Age of the oldest pending row in ms, or `null` when none is pending. */
  oldestPendingAgeMs: number | null;
  /** Pending rows with at least one failed relay attempt (waiting out their backoff). */
  failing: number;
  /** Most failed relay attempts of a pending row (`0` when none failed). */
  maxAttempts: number;
  /** A sample: the pending row with the most failed relay attempts, or `null` when none failed. */
  lastError: OutboxRowError | null;
}

/** An outbox row's column values as the INSERT sends them: queue, id, job name, data, options. */
export type PreparedOutboxRow = readonly [
  string,
  string,
  string,
  string,
  string,
];

/** The SQL of the outbox table for one dialect. Every method takes the manager to run on. */
export interface OutboxStore {
  /**
   * Inserts rows in the caller's transaction, eligible for the relay `graceMs` from now. Row ids
   * are unique to one add (see `OutboxRowKey.id`), so no row waits for another transaction's.
   */
  insert(manager: EntityManager, rows: OutboxRow[]): Promise<void>;
  /**
   * The column values of `rows`, checked: throws what the table would refuse. Optional, with
   * `insertStatement`: a store that has both can have its rows sent with the COMMIT.
   */
  prepare?(rows: OutboxRow[]): PreparedOutboxRow[];
  /** One INSERT of prepared rows, as `insert` runs it (see `prepare`). */
  insertStatement?(rows: readonly PreparedOutboxRow[]): LeadingStatement;
  /** Makes pending rows eligible for the relay `graceMs` from now (before COMMIT). */
  postpone(manager: EntityManager, keys: OutboxRowKey[]): Promise<void>;
  /** Marks rows dispatched (after the fast path enqueued them). */
  markDispatched(manager: EntityManager, keys: OutboxRowKey[]): Promise<void>;
  /**
   * Claims up to `limit` eligible pending rows of the given queues for `leaseMs`, skipping rows
   * another relay is claiming (`FOR UPDATE SKIP LOCKED`), no transaction left open. Until the
   * lease ends no other relay sees them. Oldest first.
   */
  claim(
    manager: EntityManager,
    queues: string[],
    limit: number,
  ): Promise<ClaimedOutboxRow[]>;
  /** Marks claimed rows dispatched, unless their lease has passed to another relay since. */
  markRelayed(manager: EntityManager, rows: ClaimedOutboxRow[]): Promise<void>;
  /** Ends the lease of claimed rows now (they could not be dispatched yet, through no failure). */
  release(manager: EntityManager, rows: ClaimedOutboxRow[]): Promise<void>;
  /**
   * Records a failed relay attempt on claimed rows: counts it, keeps the error, and makes each
   * row wait `pollIntervalMs × 2^(attempts − 1)`, at most `maxBackoffMs`.
   */
  noteFailure(
    manager: EntityManager,
    rows: ClaimedOutboxRow[],
    error: string,
  ): Promise<void>;
  /** Deletes dispatched rows past the retention period, at most `limit`; resolves with how many. */
  deleteExpired(manager: EntityManager, limit?: number): Promise<number>;
  /** Pending and dispatched counts, the oldest pending age, and failed relay attempts. */
  stats(manager: EntityManager): Promise<OutboxStats>;
}

/**
 * A job's data as the outbox stores it: `undefined` (which JSON cannot hold) as `{}`, what Bull
 * (`data || {}`) and BullMQ (`{}` for `undefined`) put in Redis for it, so that a relayed job
 * has the data a plain `add()` gives it.
 */
export function storedData(data: unknown): unknown {
  return data === undefined ? {} : data;
}

/** `\u0000` in JSON text, not preceded by an escaped backslash (`\\u0000` is no NUL). */
const NUL_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u0000/;
/**
 * A lone UTF-16 surrogate, which `JSON.stringify` writes as a `\udXXX` escape (it writes valid
 * pairs as they are): neither jsonb nor MySQL's JSON (nor MariaDB's `JSON_VALID`) accepts it.
 */
const LONE_SURROGATE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/i;

/**
 * `value` as JSON text the outbox column accepts, or a `TransactionalError` thrown before any
 * statement is sent (so the caller's transaction stays usable): Postgres' jsonb refuses the NUL
 * character (`\u0000`), which Bull itself would store, and both databases refuse a lone UTF-16
 * surrogate (half of an emoji cut in two).
 */
export function storableJson(
  value: unknown,
  queue: string,
  what: string,
  dialect: SqlDialect,
): string {
  const json = JSON.stringify(value);
  if (dialect === 'postgres' && NUL_ESCAPE.test(json)) {
    throw new TransactionalError(
      `A durable job of queue "${queue}" has a NUL character (\\u0000) in its ${what}, which ` +
        `the outbox (a Postgres jsonb column) cannot store. Encode such strings (e.g. base64) ` +
        `or add the job without durable mode.`,
    );
  }
  if (LONE_SURROGATE_ESCAPE.test(json)) {
    throw new TransactionalError(
      `A durable job of queue "${queue}" has a lone UTF-16 surrogate (half of a character ` +
        `outside the Basic Multilingual Plane, e.g. an emoji cut by slice()) in its ${what}, ` +
        `which the outbox's JSON column cannot store. Cut strings on code points, encode them ` +
        `(e.g. base64), or add the job without durable mode.`,
    );
  }
  return json;
}
