import type { EntityManager } from 'typeorm';
import { qualifiedTable, ResolvedOutboxOptions } from './outbox.options';

/** Identifies one outbox row. */
export interface OutboxRowKey {
  /** Bull queue name. */
  queue: string;
  /** Bull job id, or a random id for a repeatable job (whose job ids Bull derives). */
  id: string;
}

/** One job as stored in the outbox. */
export interface OutboxRow extends OutboxRowKey {
  jobName: string;
  data: unknown;
  /** Options for Bull (`jobId` included when Bull must get one). */
  opts: Record<string, unknown>;
}

/** `(queue, id)` pairs as two parallel text arrays, for `unnest($1::text[], $2::text[])`. */
function pairs(keys: OutboxRowKey[]): [string[], string[]] {
  return [keys.map((key) => key.queue), keys.map((key) => key.id)];
}

/** What the outbox holds now, for health checks and metrics. */
export interface OutboxStats {
  /** Rows not yet marked dispatched. */
  pending: number;
  /** Dispatched rows still kept (until the retention period ends). */
  dispatched: number;
  /** Age of the oldest pending row in ms, or `null` when none is pending. */
  oldestPendingAgeMs: number | null;
}

/** The SQL of the outbox table. All methods take the manager to run on. */
export class OutboxStore {
  private readonly table: string;

  constructor(private readonly options: ResolvedOutboxOptions) {
    this.table = qualifiedTable(options);
  }

  /**
   * Inserts rows in the caller's transaction (one statement); resolves with the keys written.
   * A row whose key is pending already is left alone (first data wins, as Bull keeps a job it
   * holds); a dispatched one is replaced by the new row (Bull decides, as it would for a plain
   * `add()`: it ignores the job id if it still holds the job). Keys must be distinct within
   * one call.
   */
  async insert(
    manager: EntityManager,
    rows: OutboxRow[],
  ): Promise<OutboxRowKey[]> {
    const values: unknown[] = [];
    const tuples = rows.map((row, i) => {
      values.push(
        row.queue,
        row.id,
        row.jobName,
        JSON.stringify(row.data ?? null),
        row.opts,
      );
      const p = i * 5;
      return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}::jsonb, $${p + 5}::jsonb)`;
    });
    return manager.query(
      `INSERT INTO ${this.table} AS o (queue, id, job_name, data, opts)
       VALUES ${tuples.join(', ')}
       ON CONFLICT (queue, id) DO UPDATE SET job_name = EXCLUDED.job_name,
         data = EXCLUDED.data, opts = EXCLUDED.opts, created_at = clock_timestamp(),
         available_at = EXCLUDED.available_at, dispatched_at = NULL, relay_attempts = 0,
         last_error = NULL
       WHERE o.dispatched_at IS NOT NULL
       RETURNING queue, id`,
      values,
    );
  }

  /** Marks rows dispatched. */
  async markDispatched(
    manager: EntityManager,
    keys: OutboxRowKey[],
  ): Promise<void> {
    await manager.query(
      `UPDATE ${this.table} o SET dispatched_at = clock_timestamp()
       FROM unnest($1::text[], $2::text[]) AS k(queue, id)
       WHERE o.queue = k.queue AND o.id = k.id AND o.dispatched_at IS NULL`,
      pairs(keys),
    );
  }

  /**
   * Locks up to `limit` pending rows older than the grace period, of the given queues, skipping
   * rows another relay holds. Must run in a transaction that lasts until they are marked.
   */
  async lockPending(
    manager: EntityManager,
    queues: string[],
    limit: number,
  ): Promise<OutboxRow[]> {
    const rows: any[] = await manager.query(
      `SELECT id, queue, job_name, data, opts FROM ${this.table}
       WHERE dispatched_at IS NULL AND queue = ANY($1::text[])
         AND created_at < clock_timestamp() - make_interval(secs => $2::float8 / 1000)
       ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED`,
      [queues, this.options.relay.graceMs, limit],
    );
    return rows.map((r) => ({
      id: r.id,
      queue: r.queue,
      jobName: r.job_name,
      data: r.data,
      opts: r.opts,
    }));
  }

  /** Records a failed relay attempt on rows (outside the relay's failed transaction). */
  async noteFailure(
    manager: EntityManager,
    ids: string[],
    error: string,
  ): Promise<void> {
    await manager.query(
      `UPDATE ${this.table} SET relay_attempts = relay_attempts + 1, last_error = $2
       WHERE id = ANY($1::text[])`,
      [ids, error.slice(0, 1000)],
    );
  }

  /** Deletes dispatched rows past the retention period, at most `limit`; resolves with how many. */
  async deleteExpired(manager: EntityManager, limit = 10_000): Promise<number> {
    const [, count] = await manager.query(
      `DELETE FROM ${this.table} WHERE id IN (
         SELECT id FROM ${this.table}
         WHERE dispatched_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)
         LIMIT $2)`,
      [this.options.relay.retentionMs, limit],
    );
    return Number(count ?? 0);
  }

  /** Counts of pending and dispatched rows and the oldest pending age. */
  async stats(manager: EntityManager): Promise<OutboxStats> {
    const [row] = await manager.query(
      `SELECT count(*) FILTER (WHERE dispatched_at IS NULL) AS pending,
              count(*) FILTER (WHERE dispatched_at IS NOT NULL) AS dispatched,
              extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE dispatched_at IS NULL)) * 1000 AS oldest
       FROM ${this.table}`,
    );
    return {
      pending: Number(row.pending),
      dispatched: Number(row.dispatched),
      oldestPendingAgeMs:
        row.oldest === null ? null : Math.round(Number(row.oldest)),
    };
  }
}
