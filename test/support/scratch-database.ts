import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { runMigrationsLocked } from '../../src/database/migrator';
import { e2eDatabaseUrl } from './harness';

/**
 * A migrated database of the spec's own (`<e2e database>_<suffix>`), created before its tests and
 * dropped after them: call inside a `describe`. Returns a getter for its DataSource.
 */
export function useScratchDatabase(
  suffix: string,
  poolSize: number,
): () => DataSource {
  const url = new URL(e2eDatabaseUrl());
  const database = `${url.pathname.slice(1)}_${suffix}`;
  url.pathname = `/${database}`;
  const admin = new Client({
    connectionString: new URL('/postgres', url).toString(),
  });
  let db: DataSource | undefined;

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${database}"`);
    db = new DataSource(dataSourceOptions(url.toString(), poolSize));
    await db.initialize();
    await runMigrationsLocked(db);
  }, 60_000);

  afterAll(async () => {
    await db?.destroy();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
  });

  return () => db!;
}

/** A fixed uuid (version 4 layout) for test rows: `kind` tells tables apart, `n` rows. */
export const testUuid = (kind: number, n: number) =>
  `00000000-0000-4000-8000-${String(kind).padStart(4, '0')}${String(n).padStart(8, '0')}`;
