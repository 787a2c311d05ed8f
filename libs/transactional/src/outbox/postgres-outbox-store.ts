import { createHash } from 'crypto';
import type { EntityManager } from 'typeorm';
import type { LeadingStatement } from '../transaction-driver';
import type {
  ClaimedOutboxRow,
  OutboxRow,
  PreparedOutboxRow,
  OutboxRowKey,
  OutboxStats,
  OutboxStore,
} from './outbox-store';
import { storableJson, storedData } from './outbox-store';
import { qualifiedTable, ResolvedOutboxOptions } from './outbox.options';

/** A prepared statement's name: `label` and a hash of `text` (no two texts share one). */
function statementName(label: string, text: string): string {
  return `${label}_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
}

/** `(queue, id)` pairs as two parallel text arrays, for `unnest($1::text[], $2::text[])`. */
function pairs(keys: OutboxRowKey[]): [string[], string[]] {
  return [keys.map((key) => key.queue), keys.map((key) => key.id)];
}

/**
 * Most rows per INSERT: each row takes five parameters (plus one for the grace period), and
 * Postgres' extended protocol carries at most 65,535 per statement (node-postgres writes the
 * count as 16 bits: 13,107 rows or more fail with "bind message has N parameter formats but 0
 * parameters", and abort the transaction).
 */
const MAX_ROWS_PER_INSERT = 10_000;

const MS = (param: string) => `make_interval(secs => ${param}::float8 / 1000)`;

/**
 * INSERTs of up to this many rows are prepared statements (one per row count and connection):
 * nearly every transaction writes a few rows; larger ones are parsed each time.
 */
const MAX_PREPARED_ROWS = 16;

/** The SQL of the outbox table. All methods take the manager to run on; each is one statement. */
/** The outbox SQL for Postgres (jsonb, timestamptz, `unnest` of key arrays). */
export class PostgresOutboxStore implements OutboxStore {
  private readonly table: string;
  /** The INSERT of n rows (and its statement name, when prepared), by n; built once. */
  private readonly inserts: { text: string; name?: string }[] = [];

  constructor(private readonly options: ResolvedOutboxOptions) {
    this.table = qualifiedTable(options);
  }

  /**
   * Inserts rows in the caller's transaction, eligible for the relay `graceMs` from now. Row ids
   * are unique to one add (see `OutboxRowKey.id`), so no row waits for another transaction's.
   */
  async insert(manager: EntityManager, rows: OutboxRow[]): Promise<void> {
    // NOTE: every row is checked before the first statement is sent.
    const prepared = this.prepare(rows);
    for (let i = 0; i < prepared.length; i += MAX_ROWS_PER_INSERT) {
      const { text, values } = this.insertStatement(
        prepared.slice(i, i + MAX_ROWS_PER_INSERT),
      );
      await manager.query(text, values as unknown[]);
    }
  }

  /** The column values of `rows`; throws what the table would refuse (see `storableJson`). */
  prepare(rows: OutboxRow[]): PreparedOutboxRow[] {
    return rows.map((row) => [
      row.queue,
      row.id,
      row.jobName,
      storableJson(storedData(row.data), row.queue, 'data', 'postgres'),
      storableJson(row.opts, row.queue, 'options', 'postgres'),
    ]);
  }

  /**
   * One INSERT of prepared rows (see `insert`); named, so prepared once per connection, for up
   * to `MAX_PREPARED_ROWS` rows unless `preparedStatements` is off.
   */
  insertStatement(rows: readonly PreparedOutboxRow[]): LeadingStatement {
    const values: (string | number)[] = [this.options.relay.graceMs];
    for (const row of rows) values.push(...row);
    const { text, name } = this.insertText(rows.length);
    return name ? { text, values, name } : { text, values };
  }

  private insertText(count: number): { text: string; name?: string } {
    const cached = this.inserts[count];
    if (cached) return cached;
    const tuples: string[] = [];
    for (let i = 0; i < count; i++) {
      const p = 2 + i * 5;
      tuples.push(
        `($${p}, $${p + 1}, $${p + 2}, $${p + 3}::jsonb, $${p + 4}::jsonb, clock_timestamp() + ${MS('$1')})`,
      );
    }
    const text = `INSERT INTO ${this.table} (queue, id, job_name, data, opts, available_at)
       VALUES ${tuples.join(', ')}`;
    if (count > MAX_PREPARED_ROWS) return { text };
    const statement = this.options.preparedStatements
      ? { text, name: statementName(`txo_insert_${count}`, text) }
      : { text };
    this.inserts[count] = statement;
    return statement;
  }

  /** Makes pending rows eligible for the relay `graceMs` from now (before COMMIT). */
  async postpone(manager: EntityManager, keys: OutboxRowKey[]): Promise<void> {
    await manager.query(
      `UPDATE ${this.table} o SET available_at = clock_timestamp() + ${MS('$3')}
       FROM unnest($1::text[], $2::text[]) AS k(queue, id)
       WHERE o.queue = k.queue AND o.id = k.id AND o.dispatched_at IS NULL`,
      [...pairs(keys), this.options.relay.graceMs],
    );
  }

  /** Marks rows dispatched (after the fast path enqueued them). */
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
   * Claims up to `limit` eligible pending rows of the given queues for `leaseMs`, skipping rows
   * another relay is claiming: one short statement, no transaction left open. Until the lease
   * ends no other relay sees them.
   */
  async claim(
    manager: EntityManager,
    queues: string[],
    limit: number,
  ): Promise<ClaimedOutboxRow[]> {
    // NOTE: TypeORM answers an UPDATE with [rows, affected count].
    const [rows]: [any[], number] = await manager.query(
      `WITH c AS MATERIALIZED (
         SELECT queue, id FROM ${this.table}
         WHERE dispatched_at IS NULL AND queue = ANY($1::text[])
           AND available_at <= clock_timestamp()
         ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED)
       UPDATE ${this.table} o SET available_at = clock_timestamp() + ${MS('$3')}
       FROM c WHERE o.queue = c.queue AND o.id = c.id
       RETURNING o.queue, o.id, o.job_name, o.data, o.opts, o.created_at,
         o.available_at::text AS lease`,
      [queues, limit, this.options.relay.leaseMs],
    );
    return rows
      .sort((a, b) => a.created_at - b.created_at)
      .map((r) => ({
        queue: r.queue,
        id: r.id,
        jobName: r.job_name,
        data: r.data,
        opts: r.opts,
        lease: r.lease,
      }));
  }

  /** Marks claimed rows dispatched, unless their lease has passed to another relay since. */
  markRelayed(manager: EntityManager, rows: ClaimedOutboxRow[]) {
    return this.updateLeased(
      manager,
      rows,
      'dispatched_at = clock_timestamp()',
    );
  }

  /** Ends the lease of claimed rows now (they could not be dispatched yet, through no failure). */
  release(manager: EntityManager, rows: ClaimedOutboxRow[]) {
    return this.updateLeased(manager, rows, 'available_at = clock_timestamp()');
  }

  /** Sets `assignment` on pending claimed rows whose lease is still the one they were claimed with. */
  private async updateLeased(
    manager: EntityManager,
    rows: ClaimedOutboxRow[],
    assignment: string,
  ): Promise<void> {
    if (rows.length === 0) return;
    await manager.query(
      `UPDATE ${this.table} o SET ${assignment}
       FROM unnest($1::text[], $2::text[], $3::text[]) AS k(queue, id, lease)
       WHERE o.queue = k.queue AND o.id = k.id AND o.available_at = k.lease::timestamptz
         AND o.dispatched_at IS NULL`,
      [...pairs(rows), rows.map((row) => row.lease)],
    );
  }

  /**
   * Records a failed relay attempt on claimed rows: counts it, keeps the error, and makes each
   * row wait `pollIntervalMs × 2^(attempts − 1)`, at most `maxBackoffMs`.
   */
  async noteFailure(
    manager: EntityManager,
    rows: ClaimedOutboxRow[],
    error: string,
  ): Promise<void> {
    if (rows.length === 0) return;
    const { pollIntervalMs, maxBackoffMs } = this.options.relay;
    await manager.query(
      `UPDATE ${this.table} o SET relay_attempts = o.relay_attempts + 1, last_error = $4,
         available_at = clock_timestamp() + ${MS(
           'LEAST($6::float8, $5::float8 * power(2, LEAST(o.relay_attempts, 30)))',
         )}
       FROM unnest($1::text[], $2::text[], $3::text[]) AS k(queue, id, lease)
       WHERE o.queue = k.queue AND o.id = k.id AND o.available_at = k.lease::timestamptz
         AND o.dispatched_at IS NULL`,
      [
        ...pairs(rows),
        rows.map((row) => row.lease),
        error.slice(0, 1000),
        pollIntervalMs,
        maxBackoffMs,
      ],
    );
  }

  /** Deletes dispatched rows past the retention period, at most `limit`; resolves with how many. */
  async deleteExpired(manager: EntityManager, limit = 10_000): Promise<number> {
    const [, count] = await manager.query(
      `DELETE FROM ${this.table} WHERE (queue, id) IN (
         SELECT queue, id FROM ${this.table}
         WHERE dispatched_at < clock_timestamp() - ${MS('$1')}
         LIMIT $2)`,
      [this.options.relay.retentionMs, limit],
    );
    return Number(count ?? 0);
  }

  /** Pending and dispatched counts, the oldest pending age, and failed relay attempts. */
  async stats(manager: EntityManager): Promise<OutboxStats> {
    const [row] = await manager.query(
      `SELECT count(*) FILTER (WHERE dispatched_at IS NULL) AS pending,
              count(*) FILTER (WHERE dispatched_at IS NOT NULL) AS dispatched,
              extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE dispatched_at IS NULL)) * 1000 AS oldest,
              count(*) FILTER (WHERE dispatched_at IS NULL AND relay_attempts > 0) AS failing,
              coalesce(max(relay_attempts) FILTER (WHERE dispatched_at IS NULL), 0) AS max_attempts,
              (SELECT json_build_object('queue', queue, 'id', id, 'attempts', relay_attempts,
                        'message', last_error)
                 FROM ${this.table}
                WHERE dispatched_at IS NULL AND relay_attempts > 0
                ORDER BY relay_attempts DESC, available_at DESC LIMIT 1) AS last_error
       FROM ${this.table}`,
    );
    return {
      pending: Number(row.pending),
      dispatched: Number(row.dispatched),
      oldestPendingAgeMs:
        row.oldest === null ? null : Math.round(Number(row.oldest)),
      failing: Number(row.failing),
      maxAttempts: Number(row.max_attempts),
      lastError: row.last_error ?? null,
    };
  }
}
