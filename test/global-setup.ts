import { Client } from 'pg';
import { createConnection } from 'mysql2/promise';
import { letJsonReportsHoldBigInts } from './support/json-report-bigint';

/**
 * Creates the test databases (once per `jest` run) if they do not exist yet: on Postgres always,
 * and the library's MariaDB database when the library suite runs against it (`LIB_DB=mariadb`).
 */
export default async function globalSetup(): Promise<void> {
  letJsonReportsHoldBigInts();
  if (process.env.LIB_DB === 'mariadb') await createMariaDbDatabase();
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  const admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const suffix = process.env.TEST_DB_SUFFIX ?? '';
    for (const name of [
      `transactional_test${suffix}`,
      `webhooks_test${suffix}`,
    ]) {
      const exists = await admin.query(
        'SELECT 1 FROM pg_database WHERE datname = $1',
        [name],
      );
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${name}"`);
    }
  } finally {
    await admin.end();
  }
}

/** Creates `transactional_test<TEST_DB_SUFFIX>` on the MariaDB server (`MARIADB_URL`). */
async function createMariaDbDatabase(): Promise<void> {
  const url = new URL(
    process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/mysql',
  );
  const name = `transactional_test${process.env.TEST_DB_SUFFIX ?? ''}`;
  if (!/^[A-Za-z0-9_]+$/.test(name)) {
    throw new Error(
      `TEST_DB_SUFFIX must be letters, digits, underscores: ${name}`,
    );
  }
  const admin = await createConnection({
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
  });
  try {
    await admin.query(
      `CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    );
    // NOTE: tables the specs' helpers write to inside transactions: CREATE TABLE there would
    // commit the transaction (MySQL commits implicitly before DDL).
    // A transaction-precise system-versioned table: a row's trx_start is the id of the
    // transaction that inserted it.
    await admin.query(
      `CREATE TABLE IF NOT EXISTS \`${name}\`.tx_spec_marks (
         id int AUTO_INCREMENT PRIMARY KEY,
         trx_start BIGINT UNSIGNED GENERATED ALWAYS AS ROW START INVISIBLE,
         trx_end BIGINT UNSIGNED GENERATED ALWAYS AS ROW END INVISIBLE,
         PERIOD FOR SYSTEM_TIME (trx_start, trx_end)
       ) WITH SYSTEM VERSIONING ENGINE=InnoDB`,
    );
    await admin.query(
      `CREATE TABLE IF NOT EXISTS \`${name}\`.tx_spec_locks (id varchar(64) PRIMARY KEY, n int NOT NULL) ENGINE=InnoDB`,
    );
  } finally {
    await admin.end();
  }
}
