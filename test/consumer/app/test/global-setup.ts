import { Client } from 'pg';

/** A fresh database for this run: the schema comes from TypeORM (entities and migrations). */
export default async function globalSetup(): Promise<void> {
  const name = process.env.CONSUMER_DATABASE ?? 'consumer_test';
  const admin = new Client({
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
