import { Client } from 'pg';

/** Creates the test databases (once per `jest` run) if they do not exist yet. */
export default async function globalSetup(): Promise<void> {
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
