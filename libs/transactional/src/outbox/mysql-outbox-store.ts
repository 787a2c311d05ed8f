import type { EntityManager } from 'typeorm';
import type {
  ClaimedOutboxRow,
  OutboxRow,
  OutboxRowKey,
  OutboxStats,
  OutboxStore,
} from './outbox-store';
import { storableJson, storedData } from './outbox-store';
import { qualifiedTable, ResolvedOutboxOptions } from './outbox.options';

/** Now on the server's clock in UTC (µs), whatever the session's time zone. */
const NOW = 'UTC_TIMESTAMP(6)';
/** `NOW` plus a number of ms given by the SQL expression `ms`. */
const PLUS_MS = (ms: string) =>
  `${NOW} + INTERVAL ROUND((${ms}) * 1000) MICROSECOND`;

/**
 * `(queue = ? AND id IN (?, ...)) OR ...` for `keys`, one term per queue, with its parameters.
 * NOTE: not `(queue, id) IN ((?, ?), ...)`, which MariaDB may run as a scan of the table: at
 * REPEATABLE READ an UPDATE then locks every row it reads, other transactions' rows with them,
 * and the applications' transactions that write durable jobs deadlocked. Nor one
 * `(queue = ? AND id = ?)` term per key: past a few hundred terms MariaDB's range optimizer
 * gives up and compares every row of the table with every term (measured on MariaDB 10.11 with
 * 28,000 rows: 1,000 keys 1.5 s, 4,000 keys 164 s), which held a transaction's COMMIT (the grace
 * UPDATE) and the fast path's marking for minutes. An `IN` list on the second column of the
 * primary key under an equality on the first is a set of point lookups (4,000 keys: 62 ms).
 * The UPDATEs that use this still run at READ COMMITTED (no gap locks).
 */
/**
 * The index hint of every UPDATE by `keyList`. Without it MariaDB may read the rows through the
 * pending index (`dispatched_at IS NULL`: every transaction's pending rows) and, at REPEATABLE
 * READ, lock each row it reads: the grace UPDATE that runs in a REQUIRES_NEW transaction before
 * its COMMIT then waited for the rows its own outer transaction had written, while the outer one
 * waited for it (50 s, `innodb_lock_wait_timeout`). On the primary key the lookups are points.
 */
const BY_KEY = 'FORCE INDEX (PRIMARY)';

function keyList(keys: OutboxRowKey[]): [string, string[]] {
  const byQueue = new Map<string, string[]>();
  for (const key of keys) {
    const ids = byQueue.get(key.queue);
    if (ids) ids.push(key.id);
    else byQueue.set(key.queue, [key.id]);
  }
  const params: string[] = [];
  const terms: string[] = [];
  for (const [queue, ids] of byQueue) {
    params.push(queue, ...ids);
    terms.push(`(queue = ? AND id IN (${ids.map(() => '?').join(', ')}))`);
  }
  return [`(${terms.join(' OR ')})`, params];
}

/** A JSON column as mysql2 hands it over: parsed (MySQL's JSON type) or text (MariaDB's). */
function json(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

/**
 * A JSON column selected as text (`CAST(... AS CHAR)`), parsed. Not {@link json}: a column mysql2
 * parsed already is ambiguous when its value is a string (`"text"` arrives as `text`, which is
 * no JSON), and some servers hand a JSON column over parsed, others as text.
 */
function jsonText(value: unknown): unknown {
  return JSON.parse(String(value));
}

/**
 * The outbox SQL for MySQL 8 and MariaDB 10.6+: times are `DATETIME(6)` in UTC (the lease a
 * relay holds is the `available_at` it set, compared as exact text), MySQL has no `RETURNING`
 * on UPDATE, so a claim is a short transaction (`SELECT ... FOR UPDATE SKIP LOCKED`, then
 * `UPDATE`). NOTE: MySQL evaluates the assignments of an UPDATE left to right, each seeing the
 * ones before; every UPDATE here reads a column before it assigns it.
 */
export class MysqlOutboxStore implements OutboxStore {
  private readonly table: string;

  constructor(private readonly options: ResolvedOutboxOptions) {
    this.table = qualifiedTable(options, 'mysql');
  }

  async insert(manager: EntityManager, rows: OutboxRow[]): Promise<void> {
    const values: unknown[] = [];
    const tuples = rows.map((row) => {
      values.push(
        row.queue,
        row.id,
        row.jobName,
        storableJson(storedData(row.data), row.queue, 'data', 'mysql'),
        storableJson(row.opts, row.queue, 'options', 'mysql'),
        this.options.relay.graceMs,
      );
      return `(?, ?, ?, ?, ?, ${PLUS_MS('?')})`;
    });
    await manager.query(
      `INSERT INTO ${this.table} (queue, id, job_name, data, opts, available_at)
       VALUES ${tuples.join(', ')}`,
      values,
    );
  }

  async postpone(manager: EntityManager, keys: OutboxRowKey[]): Promise<void> {
    const [where, params] = keyList(keys);
    await manager.query(
      `UPDATE ${this.table} ${BY_KEY} SET available_at = ${PLUS_MS('?')}
       WHERE ${where} AND dispatched_at IS NULL`,
      [this.options.relay.graceMs, ...params],
    );
  }

  async markDispatched(
    manager: EntityManager,
    keys: OutboxRowKey[],
  ): Promise<void> {
    const [where, params] = keyList(keys);
    // NOTE: READ COMMITTED, as `claim`: with several keys MariaDB may scan the queue's range
    // of the primary key, and at REPEATABLE READ the UPDATE then takes next-key locks on every
    // row it reads (the gaps where the applications' transactions insert their rows, and their
    // uncommitted rows): those transactions deadlocked against it.
    await manager.transaction('READ COMMITTED', (m) =>
      m.query(
        `UPDATE ${this.table} ${BY_KEY} SET dispatched_at = ${NOW}
         WHERE ${where} AND dispatched_at IS NULL`,
        params,
      ),
    );
  }

  claim(
    manager: EntityManager,
    queues: string[],
    limit: number,
  ): Promise<ClaimedOutboxRow[]> {
    if (queues.length === 0) return Promise.resolve([]);
    return manager.transaction('READ COMMITTED', async (m) => {
      const rows: Record<string, unknown>[] = await m.query(
        `SELECT queue, id, job_name, CAST(data AS CHAR) AS data, CAST(opts AS CHAR) AS opts,
                CAST(created_at AS CHAR) AS created
         FROM ${this.table}
         WHERE dispatched_at IS NULL AND queue IN (?) AND available_at <= ${NOW}
         ORDER BY available_at, created_at LIMIT ? FOR UPDATE SKIP LOCKED`,
        [queues, limit],
      );
      if (rows.length === 0) return [];
      const [{ lease }]: { lease: string }[] = await m.query(
        `SELECT CAST(${PLUS_MS('?')} AS CHAR) AS lease`,
        [this.options.relay.leaseMs],
      );
      const [where, params] = keyList(rows as unknown as OutboxRowKey[]);
      await m.query(
        `UPDATE ${this.table} ${BY_KEY} SET available_at = ? WHERE ${where}`,
        [lease, ...params],
      );
      rows.sort((a, b) => String(a.created).localeCompare(String(b.created)));
      // NOTE: MariaDB's JSON_VALID accepts text JSON.parse refuses (`"\x41"`, `1.`, written by
      // hand): such a row is handed to the relay marked invalid (it backs off with the error
      // recorded); it never fails the claim of the whole batch.
      return rows.map((r) => {
        const row = {
          queue: r.queue as string,
          id: r.id as string,
          jobName: r.job_name as string,
          lease,
        };
        try {
          return {
            ...row,
            data: jsonText(r.data),
            opts: jsonText(r.opts) as Record<string, unknown>,
          };
        } catch (error) {
          return {
            ...row,
            data: {},
            opts: {},
            invalid: `the row's data or opts is not JSON the relay can read: ${String(error)}`,
          };
        }
      });
    });
  }

  markRelayed(manager: EntityManager, rows: ClaimedOutboxRow[]) {
    return this.updateLeased(manager, rows, `dispatched_at = ${NOW}`, []);
  }

  release(manager: EntityManager, rows: ClaimedOutboxRow[]) {
    return this.updateLeased(manager, rows, `available_at = ${NOW}`, []);
  }

  async noteFailure(
    manager: EntityManager,
    rows: ClaimedOutboxRow[],
    error: string,
  ): Promise<void> {
    const { pollIntervalMs, maxBackoffMs } = this.options.relay;
    // NOTE: available_at first: it reads relay_attempts before the increment.
    await this.updateLeased(
      manager,
      rows,
      `available_at = ${PLUS_MS('LEAST(?, ? * POW(2, LEAST(relay_attempts, 30)))')},
       relay_attempts = relay_attempts + 1, last_error = ?`,
      [maxBackoffMs, pollIntervalMs, error.slice(0, 1000)],
    );
  }

  /**
   * Sets `assignment` on pending claimed rows whose lease is still the one they were claimed
   * with. Rows claimed together share one lease, so one statement per lease.
   */
  private async updateLeased(
    manager: EntityManager,
    rows: ClaimedOutboxRow[],
    assignment: string,
    assignmentParams: unknown[],
  ): Promise<void> {
    const byLease = new Map<string, ClaimedOutboxRow[]>();
    for (const row of rows) {
      const group = byLease.get(row.lease) ?? [];
      group.push(row);
      byLease.set(row.lease, group);
    }
    for (const [lease, group] of byLease) {
      const [where, params] = keyList(group);
      // NOTE: READ COMMITTED, as `markDispatched`.
      await manager.transaction('READ COMMITTED', (m) =>
        m.query(
          `UPDATE ${this.table} ${BY_KEY} SET ${assignment}
           WHERE ${where} AND available_at = ? AND dispatched_at IS NULL`,
          [...assignmentParams, ...params, lease],
        ),
      );
    }
  }

  /**
   * Deletes dispatched rows past the retention period, at most `limit`. NOTE: in a READ
   * COMMITTED transaction, as `claim`: at the server's default REPEATABLE READ, InnoDB's range
   * DELETE takes next-key locks, among them the gap where every new pending row is inserted,
   * and the applications' transactions that write durable jobs deadlocked against it.
   */
  async deleteExpired(manager: EntityManager, limit = 10_000): Promise<number> {
    const result: { affectedRows?: number } = await manager.transaction(
      'READ COMMITTED',
      (m) =>
        m.query(
          `DELETE FROM ${this.table}
           WHERE dispatched_at IS NOT NULL AND dispatched_at < ${NOW} - INTERVAL ROUND(? * 1000) MICROSECOND
           LIMIT ?`,
          [this.options.relay.retentionMs, limit],
        ),
    );
    return Number(result.affectedRows ?? 0);
  }

  async stats(manager: EntityManager): Promise<OutboxStats> {
    const [row] = await manager.query(
      `SELECT SUM(dispatched_at IS NULL) AS pending,
              SUM(dispatched_at IS NOT NULL) AS dispatched,
              TIMESTAMPDIFF(MICROSECOND,
                MIN(CASE WHEN dispatched_at IS NULL THEN created_at END), ${NOW}) / 1000 AS oldest,
              SUM(dispatched_at IS NULL AND relay_attempts > 0) AS failing,
              COALESCE(MAX(CASE WHEN dispatched_at IS NULL THEN relay_attempts END), 0) AS max_attempts,
              (SELECT JSON_OBJECT('queue', queue, 'id', id, 'attempts', relay_attempts,
                        'message', last_error)
                 FROM ${this.table}
                WHERE dispatched_at IS NULL AND relay_attempts > 0
                ORDER BY relay_attempts DESC, available_at DESC LIMIT 1) AS last_error
       FROM ${this.table}`,
    );
    return {
      pending: Number(row.pending ?? 0),
      dispatched: Number(row.dispatched ?? 0),
      oldestPendingAgeMs:
        row.oldest === null ? null : Math.round(Number(row.oldest)),
      failing: Number(row.failing ?? 0),
      maxAttempts: Number(row.max_attempts),
      lastError:
        row.last_error === null
          ? null
          : (json(row.last_error) as OutboxStats['lastError']),
    };
  }
}
