/** Where the consumer specs keep their state; `run.sh` sets these. */
export function databaseUrl(): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/${process.env.CONSUMER_DATABASE ?? 'consumer_test'}`;
  return url.toString();
}

/** Redis of the queues. */
export function redisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

/** A Redis key prefix no other run uses. */
export function uniquePrefix(): string {
  return `${process.env.CONSUMER_PREFIX ?? 'consumer'}-${process.pid}-${Date.now().toString(36)}`;
}

/** Waits until `predicate` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(
  predicate: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
