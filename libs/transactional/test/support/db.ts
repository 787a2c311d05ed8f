import { DataSource, EntityManager } from 'typeorm';
import { onMariaDb, testDataSourceOptions } from './env';

/** Anything that runs SQL: an EntityManager, a DataSource or a QueryRunner. */
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<any>;
}

/**
 * `text`, written for Postgres, as the run's database takes it. On MariaDB: `$n` placeholders
 * become `?` (parameters reordered to match, see `dbQuery`), `= ANY($n)` becomes `IN (?)`, casts
 * (`::int`) go, double-quoted identifiers get backticks, `col->>'key'` becomes
 * `JSON_UNQUOTE(JSON_EXTRACT(col, '$.key'))`, `clock_timestamp()`/`now()` become
 * `UTC_TIMESTAMP(6)`, `interval 'n second'` becomes `INTERVAL n SECOND`, `pg_sleep` `SLEEP`.
 * Only what the specs use; anything else is written per database in the spec.
 */
export function sql(text: string): string {
  if (!onMariaDb) return text;
  return splitQuoted(text)
    .map((part, i) => (i % 2 === 1 ? part : translate(part)))
    .join('')
    .replace(/(\w+)->>'(\w+)'/g, "JSON_UNQUOTE(JSON_EXTRACT($1, '$$.$2'))")
    .replace(
      /extract\(epoch FROM (\w+) - ([\w()]+)\) \* 1000/gi,
      'TIMESTAMPDIFF(MICROSECOND, $2, $1) / 1000',
    )
    .replace(
      /^(\s*)INSERT INTO([\s\S]*?)\s*ON CONFLICT DO NOTHING/i,
      '$1INSERT IGNORE INTO$2',
    )
    .replace(
      /interval '(\d+) (second|minute)s?'/gi,
      (_, n: string, unit: string) => `INTERVAL ${n} ${unit.toUpperCase()}`,
    );
}

/** Code (even indexes) and single-quoted literals (odd indexes, quotes included). */
function splitQuoted(text: string): string[] {
  return text.split(/('(?:[^']|'')*')/);
}

function translate(code: string): string {
  return code
    .replace(/=\s*ANY\((\$\d+)(::\w+\[\])?\)/gi, 'IN ($1)')
    .replace(/::(int|int4|text|uuid|jsonb|timestamptz|float8)(\[\])?/g, '')
    .replace(/"(\w+)"/g, '`$1`')
    .replace(/\bclock_timestamp\(\)|\bnow\(\)/gi, 'UTC_TIMESTAMP(6)')
    .replace(/\bpg_sleep\(/g, 'SLEEP(')
    .replace(/\bgen_random_uuid\(\)/g, 'UUID()');
}

/**
 * Runs `text` (Postgres SQL, see `sql`) with `params` on `on`. On MariaDB, `$n` placeholders
 * become `?` with the parameters repeated and ordered as they occur.
 */
export async function dbQuery(
  on: Queryable,
  text: string,
  params: unknown[] = [],
): Promise<any> {
  if (!onMariaDb) return on.query(text, params);
  // NOTE: MySQL has no integer cast that mysql2 hands back as a number (TypeORM asks for big
  // numbers as strings): the columns Postgres casts with ::int are converted here.
  const integers = [...text.matchAll(/::int4?\s+AS\s+(\w+)/gi)].map(
    (m) => m[1],
  );
  const ordered: unknown[] = [];
  const translated = sql(text);
  const parts = splitQuoted(translated).map((part, i) =>
    i % 2 === 1
      ? part
      : part.replace(/\$(\d+)/g, (_, n: string) => {
          const param = params[Number(n) - 1];
          // `IN ()` is a syntax error; `= ANY('{}')` matches nothing, and so does `IN (NULL)`.
          ordered.push(
            Array.isArray(param) && param.length === 0 ? [null] : param,
          );
          return '?';
        }),
  );
  const result = await on.query(parts.join(''), ordered);
  if (integers.length > 0 && Array.isArray(result)) {
    for (const row of result) {
      for (const column of integers) {
        if (row[column] !== null && row[column] !== undefined) {
          row[column] = Number(row[column]);
        }
      }
    }
  }
  return result;
}

/** A statement that fails in the database: on Postgres it aborts the transaction, on MariaDB not. */
export const FAILING_SQL = onMariaDb
  ? 'SELECT no_such_column FROM tx_spec_orders'
  : 'SELECT 1 / 0';

/** The server-side id of the connection `on` runs on. */
export async function backendId(on: Queryable): Promise<number> {
  const [row] = await on.query(
    onMariaDb
      ? 'SELECT CONNECTION_ID() AS pid'
      : 'SELECT pg_backend_pid() AS pid',
  );
  return Number(row.pid);
}

/** Kills the server connection `pid` from `admin` (pg_terminate_backend / KILL CONNECTION). */
export async function killBackend(admin: Queryable, pid: number) {
  await admin.query(
    onMariaDb
      ? `KILL CONNECTION ${Number(pid)}`
      : 'SELECT pg_terminate_backend($1)',
    onMariaDb ? [] : [pid],
  );
}

/**
 * An id of the transaction `manager` is in, equal for two calls in one transaction. Postgres:
 * `txid_current()`. MariaDB has no id for a transaction that has not written, so the call writes
 * one row to `tx_spec_marks` (made by the global setup; DDL here would commit the transaction),
 * a transaction-precise system-versioned table, and reads the id of the transaction that
 * inserted it (`ROW START`).
 */
export async function transactionId(manager: Queryable): Promise<string> {
  if (!onMariaDb) {
    const [row] = await manager.query('SELECT txid_current()::text AS id');
    return row.id;
  }
  const [{ open }] = await manager.query('SELECT @@in_transaction AS open');
  // Outside a transaction every statement is one of its own, as txid_current() says on Postgres.
  if (!Number(open)) return `autocommit-${Math.random()}`;
  await manager.query('INSERT INTO tx_spec_marks () VALUES ()');
  const [row] = await manager.query(
    'SELECT CAST(trx_start AS CHAR) AS id FROM tx_spec_marks WHERE id = LAST_INSERT_ID()',
  );
  return row.id;
}

/**
 * The InnoDB transaction of `manager`'s connection, as information_schema.innodb_trx shows it.
 * Writes one row to `tx_spec_marks` first (a transaction that has not written may be missing).
 * NOTE: innodb_trx is a cache, refreshed only when nobody has read it for 100 ms: the read
 * waits that long after the write, and is reliable only while no other session reads it.
 */
async function innodbTransaction(
  manager: Queryable,
): Promise<{ id: string; isolation: string }> {
  await manager.query('INSERT INTO tx_spec_marks () VALUES ()');
  await new Promise((resolve) => setTimeout(resolve, 110));
  const [row] = await manager.query(
    `SELECT CAST(trx_id AS CHAR) AS id, trx_isolation_level AS isolation
       FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = CONNECTION_ID()`,
  );
  if (!row) throw new Error('the transaction is not in innodb_trx');
  return row;
}

/** Creates the database `name` on the run's server if it does not exist. */
export async function ensureDatabase(name: string): Promise<void> {
  const admin = await openDataSource();
  try {
    if (onMariaDb) {
      await admin.query(`CREATE DATABASE IF NOT EXISTS \`${name}\``);
      return;
    }
    const exists = await admin.query(
      'SELECT 1 FROM pg_database WHERE datname = $1',
      [name],
    );
    if (exists.length === 0) await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.destroy();
  }
}

/** A DataSource of its own on the run's database (close it with `destroy()`). */
export async function openDataSource(): Promise<DataSource> {
  const dataSource = new DataSource(testDataSourceOptions());
  await dataSource.initialize();
  return dataSource;
}

/**
 * Makes the transaction of `manager` the victim of a real deadlock (MariaDB/MySQL error 1213,
 * which rolls back its whole transaction; Postgres 40P01, which aborts it): another connection
 * that has written more (InnoDB rolls back the lighter transaction) and checks for deadlocks
 * late (Postgres aborts the one that checks first) takes two row locks in the opposite order.
 * Rejects with the error the victim's statement got.
 */
export async function deadlockVictim(
  manager: EntityManager,
  admin: DataSource,
): Promise<never> {
  if (!onMariaDb) {
    // (On MariaDB the global setup made it.)
    await admin.query(
      'CREATE TABLE IF NOT EXISTS tx_spec_locks (id text PRIMARY KEY, n int NOT NULL)',
    );
  }
  const tag = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const [a, b] = [`${tag}-a`, `${tag}-b`];
  await dbQuery(
    admin,
    'INSERT INTO tx_spec_locks (id, n) VALUES ($1, 0), ($2, 0)',
    [a, b],
  );
  const other = admin.createQueryRunner();
  await other.connect();
  try {
    await other.startTransaction();
    if (!onMariaDb) {
      // NOTE: Postgres aborts the waiter whose deadlock check (after deadlock_timeout) finds the
      // cycle first: only the victim's backend may check soon.
      await other.query(`SET LOCAL deadlock_timeout = '60s'`);
    }
    // Weight: the other transaction has written rows, the victim none.
    for (let i = 0; i < 5; i++) {
      await dbQuery(other, 'INSERT INTO tx_spec_locks (id, n) VALUES ($1, 0)', [
        `${tag}-w${i}`,
      ]);
    }
    await dbQuery(other, 'UPDATE tx_spec_locks SET n = n + 1 WHERE id = $1', [
      a,
    ]);
    await dbQuery(
      manager,
      'SELECT n FROM tx_spec_locks WHERE id = $1 FOR UPDATE',
      [b],
    );
    const blocked = dbQuery(
      manager,
      'SELECT n FROM tx_spec_locks WHERE id = $1 FOR UPDATE',
      [a],
    ).then(
      () => undefined,
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closing = dbQuery(
      other,
      'UPDATE tx_spec_locks SET n = n + 1 WHERE id = $1',
      [b],
    ).catch((error: unknown) => error);
    const error = await blocked;
    const otherError = await closing;
    if (!error) {
      throw new Error(
        `expected this transaction to be the deadlock victim, the other got ${String(otherError)}`,
      );
    }
    throw error;
  } finally {
    await other.rollbackTransaction().catch(() => undefined);
    await other.release();
  }
}

/** Connections of `dataSource`'s pool in use and callers waiting (pg's or mysql2's pool). */
export function poolState(dataSource: DataSource): {
  inUse: number;
  waiting: number;
} {
  const driver = dataSource.driver as unknown as {
    master?: { totalCount: number; idleCount: number; waitingCount: number };
    pool?: {
      _allConnections: { length: number };
      _freeConnections: { length: number };
      _connectionQueue: { length: number };
    };
  };
  if (driver.pool) {
    return {
      inUse:
        driver.pool._allConnections.length -
        driver.pool._freeConnections.length,
      waiting: driver.pool._connectionQueue.length,
    };
  }
  const master = driver.master!;
  return {
    inUse: master.totalCount - master.idleCount,
    waiting: master.waitingCount,
  };
}

/**
 * Kills every other connection to the spec database that sits idle in an open transaction
 * (Postgres: `idle in transaction`; MariaDB: a sleeping connection with an InnoDB transaction).
 */
export async function killIdleInTransaction(admin: Queryable): Promise<void> {
  if (!onMariaDb) {
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`,
    );
    return;
  }
  const rows: { pid: number }[] = await admin.query(
    `SELECT p.id AS pid FROM information_schema.innodb_trx t
       JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
      WHERE p.db = DATABASE() AND p.command = 'Sleep' AND p.id <> CONNECTION_ID()`,
  );
  for (const { pid } of rows) await killBackend(admin, pid);
}

/** The isolation level of the open transaction, as `read committed`. */
export async function isolationLevel(on: Queryable): Promise<string> {
  // NOTE: MariaDB's @@tx_isolation is the session's level, not the open transaction's.
  const level = onMariaDb
    ? (await innodbTransaction(on)).isolation
    : (
        await on.query(`SELECT current_setting('transaction_isolation') AS l`)
      )[0].l;
  return String(level).toLowerCase().replace(/-/g, ' ');
}
