import { INestApplication } from '@nestjs/common';
import type { MigrationInterface } from 'typeorm';
import { DataSource } from 'typeorm';
import {
  createOutboxMigration,
  createOutboxUpgradeMigration,
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  uniqueName,
  testDataSourceOptions,
  itOnMariaDb,
  onMariaDb,
} from './support/env';
import { bullQueue, closeLibApp, createLibApp } from './support/lib-app';

const TABLE = 'tx_spec_outbox_upgrade';
const QUEUE = uniqueName('upgrade-a');
const OTHER = uniqueName('upgrade-b');

/** The table `createOutboxMigration()` made before `available_at` (verbatim). */
const PREVIOUS_SHAPE = [
  `CREATE TABLE "${TABLE}" (
    "id" text PRIMARY KEY,
    "queue" text NOT NULL,
    "job_name" text NOT NULL,
    "data" jsonb NOT NULL,
    "opts" jsonb NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    "dispatched_at" timestamptz,
    "relay_attempts" integer NOT NULL DEFAULT 0,
    "last_error" text)`,
  `CREATE INDEX "${TABLE}_pending" ON "${TABLE}" ("created_at") WHERE "dispatched_at" IS NULL`,
  `CREATE INDEX "${TABLE}_dispatched" ON "${TABLE}" ("dispatched_at") WHERE "dispatched_at" IS NOT NULL`,
];

// NOTE: the previous table shape existed only on Postgres: MySQL/MariaDB support came with the
// current shape, and the upgrade migration does nothing there (the last case checks that).
const describeOnPostgres = onMariaDb ? describe.skip : describe;

describeOnPostgres(
  'when an outbox table of the previous shape is upgraded',
  () => {
    let dataSource: DataSource;

    /** Runs `up` (or `down`) of a migration class in a transaction, as TypeORM does. */
    async function migrate(
      Migration: new () => MigrationInterface,
      direction: 'up' | 'down' = 'up',
    ) {
      const runner = dataSource.createQueryRunner();
      await runner.startTransaction();
      try {
        await new Migration()[direction](runner);
        await runner.commitTransaction();
      } catch (error) {
        await runner.rollbackTransaction();
        throw error;
      } finally {
        await runner.release();
      }
    }

    /** Columns (sorted: an added column comes last), primary key and pending-index definition. */
    async function shape() {
      const columns = await dataSource.query(
        `SELECT column_name AS name, is_nullable AS nullable FROM information_schema.columns
        WHERE table_name = $1 ORDER BY column_name`,
        [TABLE],
      );
      const [pk] = await dataSource.query(
        `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = $1::regclass AND contype = 'p'`,
        [TABLE],
      );
      const [pending] = await dataSource.query(
        `SELECT indexdef AS def FROM pg_indexes WHERE indexname = $1`,
        [`${TABLE}_pending`],
      );
      return {
        columns: columns.map(
          (c: { name: string; nullable: string }) =>
            `${c.name}${c.nullable === 'NO' ? '' : '?'}`,
        ),
        primaryKey: pk.def,
        pendingIndex: pending.def.replace(/^.* USING btree /, ''),
      };
    }

    const CURRENT = {
      columns: [
        'available_at',
        'created_at',
        'data',
        'dispatched_at?',
        'id',
        'job_name',
        'last_error?',
        'opts',
        'queue',
        'relay_attempts',
      ],
      primaryKey: 'PRIMARY KEY (queue, id)',
      pendingIndex: '(available_at) WHERE (dispatched_at IS NULL)',
    };

    beforeAll(async () => {
      dataSource = new DataSource(testDataSourceOptions());
      await dataSource.initialize();
    });

    beforeEach(async () => {
      await dataSource.query(`DROP TABLE IF EXISTS "${TABLE}"`);
    });

    afterAll(() => dataSource?.destroy());

    it('should give it the current shape, keep its rows and count their grace period from created_at, and do nothing the second time', async () => {
      for (const sql of PREVIOUS_SHAPE) await dataSource.query(sql);
      await dataSource.query(
        `INSERT INTO "${TABLE}" (id, queue, job_name, data, opts, created_at, dispatched_at) VALUES
         ('old', $1, '__default__', '{"n":1}', '{}', clock_timestamp() - interval '10 seconds', NULL),
         ('recent', $1, '__default__', '{"n":2}', '{}', clock_timestamp(), NULL),
         ('done', $1, '__default__', '{"n":3}', '{}', clock_timestamp() - interval '1 minute', clock_timestamp())`,
        [QUEUE],
      );

      await migrate(createOutboxUpgradeMigration({ tableName: TABLE }));

      expect(await shape()).toEqual(CURRENT);
      const rows = await dataSource.query(
        `SELECT id, extract(epoch FROM available_at - created_at) * 1000 AS grace_ms
         FROM "${TABLE}" ORDER BY id`,
      );
      expect(
        rows.map((r: { id: string; grace_ms: string }) => [
          r.id,
          Number(r.grace_ms),
        ]),
      ).toEqual([
        ['done', 5000],
        ['old', 5000],
        ['recent', 5000],
      ]);

      await migrate(createOutboxUpgradeMigration({ tableName: TABLE }));
      expect(await shape()).toEqual(CURRENT);
      expect(
        await dataSource.query(`SELECT count(*)::int AS n FROM "${TABLE}"`),
      ).toEqual([{ n: 3 }]);
    });

    it('should do nothing after createOutboxMigration (a new installation runs both)', async () => {
      await migrate(createOutboxMigration({ tableName: TABLE }));
      const created = await shape();

      await migrate(createOutboxUpgradeMigration({ tableName: TABLE }));

      expect(created).toEqual(CURRENT);
      expect(await shape()).toEqual(CURRENT);
    });

    it('should restore the previous shape on down()', async () => {
      for (const sql of PREVIOUS_SHAPE) await dataSource.query(sql);
      const previous = await shape();
      await migrate(createOutboxUpgradeMigration({ tableName: TABLE }));

      await migrate(createOutboxUpgradeMigration({ tableName: TABLE }), 'down');

      expect(await shape()).toEqual(previous);
      expect(previous).toEqual({
        columns: CURRENT.columns.filter((column) => column !== 'available_at'),
        primaryKey: 'PRIMARY KEY (id)',
        pendingIndex: '(created_at) WHERE (dispatched_at IS NULL)',
      });
    });

    describe('when the library runs on the upgraded table', () => {
      let app: INestApplication;

      afterEach(() => closeLibApp(app, [QUEUE, OTHER]));

      it('should relay the rows written before the upgrade and write new rows of one jobId to two queues', async () => {
        for (const sql of PREVIOUS_SHAPE) await dataSource.query(sql);
        await dataSource.query(
          `INSERT INTO "${TABLE}" (id, queue, job_name, data, opts, created_at)
         VALUES ('written-before', $1, '__default__', '{"n":1}', '{"attempts":2}',
                 clock_timestamp() - interval '10 seconds')`,
          [QUEUE],
        );
        await migrate(createOutboxUpgradeMigration({ tableName: TABLE }));
        app = await createLibApp({
          queues: [
            { name: QUEUE, durable: true },
            { name: OTHER, durable: true },
          ],
          options: { outbox: { tableName: TABLE, relay: { enabled: false } } },
          listen: false,
        });
        const outbox = app.get(TransactionalOutbox);

        expect(await outbox.relayOnce()).toBe(1);
        const relayed = await bullQueue(app, QUEUE).getJob('written-before');
        expect(relayed?.data).toEqual({ n: 1 });
        expect(relayed?.opts.attempts).toBe(2);

        const aware = (name: string) =>
          app.get<TransactionAwareQueue<{ n: number }>>(
            getTransactionAwareQueueToken(name),
          );
        await app.get(TransactionHost).withTransaction(async () => {
          await aware(QUEUE).add({ n: 2 }, { jobId: 'shared-id' });
          await aware(OTHER).add({ n: 3 }, { jobId: 'shared-id' });
        });
        expect(
          await dataSource.query(
            `SELECT queue FROM "${TABLE}" WHERE opts->>'jobId' = 'shared-id' ORDER BY queue`,
          ),
        ).toEqual([QUEUE, OTHER].sort().map((queue) => ({ queue })));
        expect((await bullQueue(app, OTHER).getJob('shared-id'))?.data).toEqual(
          {
            n: 3,
          },
        );
      });
    });
  },
);

describe('when the upgrade migration runs on MySQL/MariaDB', () => {
  itOnMariaDb(
    'should leave the table createOutboxMigration made as it is',
    async () => {
      const dataSource = new DataSource(testDataSourceOptions());
      await dataSource.initialize();
      const runner = dataSource.createQueryRunner();
      const definition = async () =>
        (await dataSource.query(`SHOW CREATE TABLE \`${TABLE}\``))[0][
          'Create Table'
        ];
      try {
        await dataSource.query(`DROP TABLE IF EXISTS \`${TABLE}\``);
        await new (createOutboxMigration({ tableName: TABLE }))().up(runner);
        const created = await definition();
        await new (createOutboxUpgradeMigration({ tableName: TABLE }))().up(
          runner,
        );
        expect(await definition()).toBe(created);
        expect(created).toContain('PRIMARY KEY (`queue`,`id`)');
      } finally {
        await runner.release();
        await dataSource.destroy();
      }
    },
  );
});
