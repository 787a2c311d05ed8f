import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app-config';

/** Rows deleted by one retention run, per kind, and how many statements it took. */
export interface RetentionResult {
  events: number;
  attempts: number;
  idempotencyKeys: number;
  batches: number;
}

/** One retention batch per kind: $1 is the age (days, or hours for keys), $2 the batch size. */
export const RETENTION_SQL = {
  // NOTE: the delete cascades to the event's deliveries and their attempts. The NOT EXISTS
  // reads a snapshot: a claim may have marked a delivery `sending` since (or be doing so, its
  // row locked). So every delivery of the candidates is locked too (SKIP LOCKED: one a worker
  // holds is never waited for) and re-read as locked (the latest version); an event is
  // deleted only when each of its deliveries could be locked and is final.
  events: `WITH candidates AS MATERIALIZED (
         SELECT e.id FROM events e
          WHERE e.created_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.event_id = e.id AND d.status IN ('pending', 'sending'))
          ORDER BY e.created_at LIMIT $2 FOR UPDATE OF e SKIP LOCKED),
       locked AS MATERIALIZED (
         SELECT d.event_id, d.status FROM deliveries d
          WHERE d.event_id IN (SELECT id FROM candidates)
          FOR UPDATE OF d SKIP LOCKED)
       DELETE FROM events WHERE id IN (
         SELECT c.id FROM candidates c
          WHERE NOT EXISTS (SELECT 1 FROM locked l
                             WHERE l.event_id = c.id AND l.status IN ('pending', 'sending'))
            AND (SELECT count(*) FROM locked l WHERE l.event_id = c.id)
              = (SELECT count(*) FROM deliveries d WHERE d.event_id = c.id))`,
  attempts: `DELETE FROM delivery_attempts WHERE id IN (
         SELECT a.id FROM delivery_attempts a
          WHERE a.started_at < now() - make_interval(days => $1)
            AND a.status <> 'in_progress'
            AND NOT EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.id = a.delivery_id AND d.status IN ('pending', 'sending'))
          ORDER BY a.started_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED)`,
  // NOTE: by ctid (the rows are locked, so it cannot move): `(account_id, key) IN (...)`
  // is planned as a hash join over the whole table.
  idempotencyKeys: `DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM idempotency_keys
          WHERE created_at < now() - make_interval(hours => $1)
          ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
};

/** Longest a retention statement may wait for a lock before it gives up until the next run. */
const LOCK_TIMEOUT = '1s';

/** Pause between batches, so that a large backlog never monopolises the database. */
const PAUSE_MS = 20;

/** Most batches per kind and run: a run stays bounded; the next run goes on. */
const MAX_BATCHES = 1000;

/**
 * Deletes what has outlived its retention: events older than `EVENT_RETENTION_DAYS` (with
 * their deliveries and attempts; never while a delivery is in flight), attempts older than
 * `ATTEMPT_RETENTION_DAYS` (with their stored responses) and idempotency keys older than
 * `IDEMPOTENCY_RETENTION_HOURS` (with their sealed responses).
 *
 * Each batch is one statement in its own short transaction that picks at most
 * `RETENTION_BATCH_SIZE` rows with `FOR UPDATE SKIP LOCKED` (rows a worker holds are left for
 * the next run, never waited for) under a 1 s lock timeout, so the hot tables are never
 * locked for long; several processes may run it at once.
 */
@Injectable()
export class RetentionService
  implements OnApplicationBootstrap, OnApplicationShutdown
{
  private readonly logger = new Logger(RetentionService.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopping = false;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap() {
    if (this.config.role === 'api') return;
    this.timer = setInterval(() => {
      this.running ??= this.runOnce()
        .catch((error: unknown) =>
          this.logger.warn(`retention failed: ${String(error)}`),
        )
        .finally(() => (this.running = undefined));
    }, this.config.retentionIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown() {
    this.stopping = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One retention pass over every kind; resolves with what it deleted. */
  async runOnce(): Promise<RetentionResult> {
    const limit = this.config.retentionBatchSize;
    const result: RetentionResult = {
      events: 0,
      attempts: 0,
      idempotencyKeys: 0,
      batches: 0,
    };
    const drain = async (sql: string, age: number) => {
      let deleted = 0;
      for (let i = 0; i < MAX_BATCHES && !this.stopping; i++) {
        const count = await this.batch(sql, [age, limit]);
        result.batches++;
        deleted += count;
        if (count < limit) break;
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      }
      return deleted;
    };
    result.events = await drain(
      RETENTION_SQL.events,
      this.config.eventRetentionDays,
    );
    result.attempts = await drain(
      RETENTION_SQL.attempts,
      this.config.attemptRetentionDays,
    );
    result.idempotencyKeys = await drain(
      RETENTION_SQL.idempotencyKeys,
      this.config.idempotencyRetentionHours,
    );
    if (result.events + result.attempts + result.idempotencyKeys > 0) {
      this.logger.log(
        `retention deleted ${result.events} event(s), ${result.attempts} attempt(s) and ` +
          `${result.idempotencyKeys} idempotency key(s) in ${result.batches} batch(es)`,
      );
    }
    return result;
  }

  /** One statement in its own transaction, with a short lock timeout; the rows it deleted. */
  private batch(sql: string, params: unknown[]): Promise<number> {
    return this.dataSource.transaction(async (m) => {
      await m.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      const [, count]: [unknown, number] = await m.query(sql, params);
      return count;
    });
  }
}
