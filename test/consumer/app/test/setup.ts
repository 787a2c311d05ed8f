import pg from 'pg';

/** A fresh database for this run (run.sh runs it before the specs); TypeORM makes the schema. */
async function setup(): Promise<void> {
  const name = process.env.CONSUMER_DATABASE ?? 'consumer_test';
  const admin = new pg.Client({
    connectionString:
      process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
}

setup().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
