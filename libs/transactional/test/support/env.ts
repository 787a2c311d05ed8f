/** Connection settings of the library specs: the shared Postgres and Redis. */
export function testDatabaseUrl(
  database = `transactional_test${process.env.TEST_DB_SUFFIX ?? ''}`,
): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/${database}`;
  return url.toString();
}

/** Redis URL of the shared Redis. */
export function testRedisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

/** A queue name no other spec (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
