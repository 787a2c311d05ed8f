import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source-options';
import {
  GenericPlanPool,
  StatementRunner,
  unpreparedRunner,
} from '../../src/database/prepared-query';
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

/**
 * Declares `body`'s tests once per way the worker runs its one-statement transactions, on a
 * scratch database: the service's default (a pool of its own, prepared, generic plans), and
 * `DATABASE_PREPARED_STATEMENTS=off` (TypeORM's pool, unnamed) with a quarter of the runs
 * (`runs(n)`). Call inside a `describe`; the pool closes after its tests.
 */
export function describeStatementRunners(
  db: () => DataSource,
  body: (
    statements: () => StatementRunner,
    runs: (n: number) => number,
  ) => void,
): void {
  let pool: GenericPlanPool | undefined;
  afterAll(async () => {
    await pool?.close();
  });
  describe('run with generic plans (the default)', () => {
    body(
      () =>
        (pool ??= new GenericPlanPool(
          (db().options as { url: string }).url,
          4,
        )),
      (n) => n,
    );
  });
  describe('run unprepared', () => {
    body(
      () => unpreparedRunner(db().manager),
      (n) => Math.ceil(n / 4),
    );
  });
}
