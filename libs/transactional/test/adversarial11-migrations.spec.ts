/**
 * adversarial11: outbox migrations with table names the options accept. `resolveOutboxOptions`
 * accepts any plain identifier of up to 63 characters; the migration derives index names
 * `<table>_pending` / `<table>_dispatched` from it. Postgres truncates identifiers to 63 bytes
 * (both index names become `<table>_`, or the table's own name: "relation already exists");
 * MariaDB refuses identifiers over 64 characters ("Identifier name ... is too long"). A name the
 * options accept must either work or be refused up front with a clear error.
 */
import { DataSource } from 'typeorm';
import { createOutboxMigration, createOutboxUpgradeMigration } from '../src';
import { onMariaDb } from './support/env';
import { openDataSource } from './support/db';

jest.setTimeout(30_000);

let dataSource: DataSource;
beforeAll(async () => {
  dataSource = await openDataSource();
});
afterAll(() => dataSource?.destroy());

const q = (name: string) => (onMariaDb ? `\`${name}\`` : `"${name}"`);

/** `a11m_<pid>_` padded with x to `length` characters. */
const nameOf = (length: number) =>
  `a11m_${process.pid}_`.padEnd(length, 'x').slice(0, length);

async function migrate(
  Migration: new () => {
    up(r: any): Promise<void>;
    down(r: any): Promise<void>;
  },
  direction: 'up' | 'down',
) {
  const runner = dataSource.createQueryRunner();
  try {
    await new Migration()[direction](runner);
  } finally {
    await runner.release();
  }
}

describe('createOutboxMigration with long table names', () => {
  for (const length of [52, 53, 56, 57, 61, 62, 63]) {
    it(`a ${length}-character table name: refused by createOutboxMigration() with a clear error, or up() makes a working table (and down() drops it)`, async () => {
      const tableName = nameOf(length);
      await dataSource.query(`DROP TABLE IF EXISTS ${q(tableName)}`);
      let Migration: ReturnType<typeof createOutboxMigration>;
      try {
        Migration = createOutboxMigration({ tableName });
      } catch (error) {
        expect(String(error)).toMatch(/too long|characters/i);
        return;
      }
      const outcome = await migrate(Migration, 'up').then(
        () => 'created',
        (error: unknown) => `up() failed: ${String(error)}`,
      );
      try {
        expect(outcome).toBe('created');
        if (!onMariaDb) {
          await migrate(createOutboxUpgradeMigration({ tableName }), 'up');
        }
        await dataSource.query(
          `INSERT INTO ${q(tableName)} (queue, id, job_name, data, opts) VALUES ('q', '1', 'n', '{}', '{}')`,
        );
        await migrate(Migration, 'down');
      } finally {
        await dataSource.query(`DROP TABLE IF EXISTS ${q(tableName)}`);
      }
    });
  }
});

describe('createOutboxMigration, mixed-case table in a mixed-case schema', () => {
  it('up(), down(), up() again, then the upgrade migration (a no-op on it) and its own down()/up()', async () => {
    const schema = `A11_Schema_${process.pid}`;
    const tableName = 'Outbox_MixedCase';
    const Migration = createOutboxMigration({ tableName, schema });
    const Upgrade = createOutboxUpgradeMigration({ tableName, schema });
    const table = `${q(schema)}.${q(tableName)}`;
    try {
      await migrate(Migration, 'up');
      await migrate(Migration, 'down');
      await migrate(Migration, 'up');
      await migrate(Upgrade, 'up');
      if (!onMariaDb) {
        await migrate(Upgrade, 'down');
        await migrate(Upgrade, 'up');
      }
      await dataSource.query(
        `INSERT INTO ${table} (queue, id, job_name, data, opts) VALUES ('q', '1', 'n', '{}', '{}'), ('q2', '1', 'n', '{}', '{}')`,
      );
      const [row] = await dataSource.query(
        `SELECT count(*) AS n FROM ${table}`,
      );
      expect(Number(row.n)).toBe(2);
    } finally {
      await dataSource.query(
        onMariaDb
          ? `DROP DATABASE IF EXISTS ${q(schema)}`
          : `DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`,
      );
    }
  });
});
