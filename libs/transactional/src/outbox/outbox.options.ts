import { quoteIdentifier, SqlDialect } from '../dialect/sql-dialect';

/** Settings of the transactional outbox that durable queues write to. */
export interface OutboxOptions {
  /**
   * Table that holds the outbox rows: a plain identifier of at most 52 characters (its index
   * names add up to 11). Default: `'transactional_outbox'`.
   */
  tableName?: string;
  /**
   * Postgres schema of the table (MySQL/MariaDB: its database). Default: the connection's search
   * path (MySQL/MariaDB: the connection's database).
   */
  schema?: string;
  /** The relay that re-dispatches rows the fast path did not mark in time. */
  relay?: OutboxRelayOptions;
  /**
   * The fast path marks enqueued rows dispatched in batches, off the request path: at most this
   * long after the enqueue. Default: `25` ms.
   */
  markBatchDelayMs?: number;
  /**
   * Longest the fast path (the enqueue right after the commit) may wait for Redis to take a
   * transaction's durable jobs, and never past the moment the relay may take their rows (the
   * grace period after the commit). When it gives up (Redis down, paused or slow, or its Bull
   * client not connected) the rows are left to the relay and the request goes on; the enqueue
   * in flight is not cancelled: when it lands it marks the rows (a relay that has not taken
   * them yet leaves them alone; one that has re-adds a job id Bull holds, which Bull ignores).
   * Default: `300` ms.
   */
  fastPathTimeoutMs?: number;
  /**
   * Postgres: the INSERT that writes a transaction's outbox rows with its COMMIT is a prepared
   * statement, parsed and planned once per connection (one per row count up to 16) rather than
   * for every transaction. Turn it off behind a pooler that does not keep prepared statements
   * across transactions (PgBouncer in transaction mode before 1.21, or with
   * `max_prepared_statements = 0`): there the COMMIT of a durable job would fail with
   * "prepared statement ... does not exist". Ignored on MySQL/MariaDB. Default: `true`.
   */
  preparedStatements?: boolean;
}

/** Settings of the outbox relay (one runs in every process that imports the module). */
export interface OutboxRelayOptions {
  /** Run the relay in this process. Default: `true`. */
  enabled?: boolean;
  /** Time between polls while all is well. Default: `1000` ms. */
  pollIntervalMs?: number;
  /**
   * How long after its transaction commits a row becomes eligible for the relay: longer than
   * the fast path needs to enqueue and mark it, so the relay only picks up what the fast path
   * lost. Counted from the INSERT, and pushed again right before COMMIT when the transaction
   * has been open for more than half of it, so a long transaction's rows are not relayed while
   * its fast path runs; the fast path gives up before it ends (see `fastPathTimeoutMs`).
   * With `0` every durable job is left to the relay. Default: `5000` ms.
   */
  graceMs?: number;
  /** Most rows one poll dispatches. Default: `500`. */
  batchSize?: number;
  /** Dispatched rows are deleted after this long. Default: `3600000` ms (1 h). */
  retentionMs?: number;
  /**
   * Longest wait between polls while Redis or Postgres fail (exponential backoff), and longest
   * wait of a row after failed relay attempts: a row waits `pollIntervalMs` after its first
   * failure, twice as long after each further one, at most this. Default: `30000` ms.
   */
  maxBackoffMs?: number;
  /**
   * How long a relay owns the rows it claims: no other relay takes them meanwhile. Its Redis
   * calls for them end (or are given up) before the lease does; a row whose relay died becomes
   * eligible again when the lease ends. Default: `30000` ms.
   */
  leaseMs?: number;
  /**
   * Longest a relay waits for one Redis call (job husk check, enqueue); the calls for one
   * batch also end before its lease does. Default: `5000` ms.
   */
  redisTimeoutMs?: number;
}

/** `OutboxOptions` with every default applied. */
export type ResolvedOutboxOptions = Required<
  Omit<OutboxOptions, 'relay' | 'schema'>
> & {
  schema?: string;
  relay: Required<OutboxRelayOptions>;
};

/** Longest outbox table name: `<table>_dispatched`, its longest index name, fits in 63. */
const MAX_TABLE_NAME_LENGTH = 63 - '_dispatched'.length;

/** Applies the defaults. */
export function resolveOutboxOptions(
  options: OutboxOptions = {},
): ResolvedOutboxOptions {
  const tableName = options.tableName ?? 'transactional_outbox';
  // NOTE: the migration names the indexes `<table>_pending` and `<table>_dispatched`, and
  // Postgres cuts identifiers to 63 bytes (two names would then collide), MySQL refuses them.
  if (tableName.length > MAX_TABLE_NAME_LENGTH) {
    throw new Error(
      `The outbox table name "${tableName}" is ${tableName.length} characters long; at most ` +
        `${MAX_TABLE_NAME_LENGTH} are allowed, so that the names of its indexes ` +
        `("<table>_dispatched") stay within Postgres' and MySQL's 63-character limit.`,
    );
  }
  for (const name of [tableName, options.schema]) {
    if (name !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
      throw new Error(
        `Outbox table and schema names must be plain SQL identifiers (letters, digits, ` +
          `underscores), got "${name}".`,
      );
    }
  }
  for (const [name, value] of Object.entries({
    fastPathTimeoutMs: options.fastPathTimeoutMs,
    'relay.leaseMs': options.relay?.leaseMs,
    'relay.redisTimeoutMs': options.relay?.redisTimeoutMs,
  })) {
    if (value !== undefined && !(value > 0)) {
      throw new Error(
        `Outbox option ${name} must be a positive number of ms, got ${String(value)}.`,
      );
    }
  }
  return {
    tableName,
    schema: options.schema,
    markBatchDelayMs: options.markBatchDelayMs ?? 25,
    fastPathTimeoutMs: options.fastPathTimeoutMs ?? 300,
    preparedStatements: options.preparedStatements ?? true,
    relay: {
      enabled: options.relay?.enabled ?? true,
      pollIntervalMs: options.relay?.pollIntervalMs ?? 1000,
      graceMs: options.relay?.graceMs ?? 5000,
      batchSize: options.relay?.batchSize ?? 500,
      retentionMs: options.relay?.retentionMs ?? 3_600_000,
      maxBackoffMs: options.relay?.maxBackoffMs ?? 30_000,
      leaseMs: options.relay?.leaseMs ?? 30_000,
      redisTimeoutMs: options.relay?.redisTimeoutMs ?? 5_000,
    },
  };
}

/** The table's name as SQL, schema-qualified when a schema is set. */
export function qualifiedTable(
  options: Pick<OutboxOptions, 'tableName' | 'schema'>,
  dialect: SqlDialect = 'postgres',
): string {
  const table = quoteIdentifier(
    dialect,
    options.tableName ?? 'transactional_outbox',
  );
  return options.schema
    ? `${quoteIdentifier(dialect, options.schema)}.${table}`
    : table;
}
