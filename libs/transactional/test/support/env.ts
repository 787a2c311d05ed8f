/** The database the library specs run against: `LIB_DB=postgres` (default) or `mariadb`. */
export type LibDb = 'postgres' | 'mariadb';

/** `LIB_DB` of this run. */
export function libDb(): LibDb {
  const value = process.env.LIB_DB ?? 'postgres';
  if (value !== 'postgres' && value !== 'mariadb') {
    throw new Error(`LIB_DB must be "postgres" or "mariadb", got "${value}"`);
  }
  return value;
}

/** Whether this run is against MariaDB (`LIB_DB=mariadb`). */
export const onMariaDb = libDb() === 'mariadb';

/** The library specs' database name (isolated per helper by `TEST_DB_SUFFIX`). */
export function testDatabaseName(): string {
  return `transactional_test${process.env.TEST_DB_SUFFIX ?? ''}`;
}

/**
 * URL of a database of the shared server of this run: Postgres (`DATABASE_URL`, default
 * `postgres://postgres@127.0.0.1:5432`) or, with `LIB_DB=mariadb`, MariaDB (`MARIADB_URL`,
 * default `mysql://root@127.0.0.1:3306`).
 */
export function testDatabaseUrl(database = testDatabaseName()): string {
  const url = new URL(
    onMariaDb
      ? (process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/mysql')
      : (process.env.DATABASE_URL ??
        'postgres://postgres@127.0.0.1:5432/postgres'),
  );
  url.pathname = `/${database}`;
  return url.toString();
}

/** TypeORM connection options of the run's database (`type`, `url`), for a DataSource of a spec. */
export function testDataSourceOptions(database?: string) {
  return onMariaDb
    ? ({ type: 'mariadb', url: testDatabaseUrl(database) } as const)
    : ({ type: 'postgres', url: testDatabaseUrl(database) } as const);
}

/** TypeORM `extra` that sizes the connection pool to `max` (pg: `max`, mysql2: `connectionLimit`). */
export function poolSizeExtra(max: number): Record<string, number> {
  return onMariaDb ? { connectionLimit: max } : { max };
}

/** Redis URL of the shared Redis. */
export function testRedisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

/** A queue name no other spec (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * `it` on Postgres; on MariaDB `it.skip`, with `reason` saying why the case is Postgres-only
 * (listed in the package README). Keep such cases few.
 */
export function itOnPostgres(reason: string): jest.It {
  void reason;
  return onMariaDb ? it.skip : it;
}

/** `it` on MariaDB only (a MySQL/MariaDB behaviour Postgres does not have); `it.skip` on Postgres. */
export const itOnMariaDb: jest.It = onMariaDb ? it : it.skip;
