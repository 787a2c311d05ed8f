import { randomUUID } from 'crypto';
import { DataSource } from 'typeorm';
import {
  Propagation,
  TransactionAbortedError,
  UnexpectedRollbackError,
} from '../src';
import { useAdversarialApp } from './support/adversarial-app';
import { dbQuery } from './support/db';
import { onMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import { inRedis, waitFor } from './support/lib-app';

/*
 * MariaDB-only: statements that end the transaction implicitly (or try to change it) sent
 * through the scope's manager. The promise checked everywhere: a job exists iff its row
 * committed; when the promise cannot hold (DDL, README "DDL commits"), the caller must be told
 * with TransactionAbortedError and the statements after it must be refused.
 */
const describeMariaDb = onMariaDb ? describe : describe.skip;

describeMariaDb(
  'adversarial7 (MariaDB): implicit commits inside a scope',
  () => {
    const app = useAdversarialApp({
      plain: uniqueName('a7i-plain'),
      durable: uniqueName('a7i-durable'),
      outboxTable: 'a7_implicit_outbox',
    });
    let admin: DataSource;

    beforeAll(async () => {
      admin = new DataSource(testDataSourceOptions());
      await admin.initialize();
    });
    afterAll(async () => {
      await admin?.destroy();
    });

    async function insert(label: string) {
      await dbQuery(
        app.host.manager,
        'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
        [randomUUID(), label],
      );
    }

    async function committed(label: string): Promise<boolean> {
      const found = await dbQuery(
        admin,
        'SELECT 1 FROM tx_spec_orders WHERE label = $1',
        [label],
      );
      return found.length > 0;
    }

    /** Writes `label` and adds a plain and a durable job for it; resolves with the ids. */
    async function write(label: string) {
      await insert(label);
      const plain = await app.plain.add({ label });
      const durable = await app.durable.add({ label });
      return { label, plain, durable };
    }

    /**
     * The promise for each write: its row committed iff its plain job is in Redis, and its
     * durable job reaches Redis (fast path or relay) iff the row committed.
     */
    async function expectJobsFollowRows(
      writes: { label: string; plain: string; durable: string }[],
    ) {
      // Relay: graceMs 200 ms, polls every 20 ms.
      await new Promise((resolve) => setTimeout(resolve, 900));
      const seen = [];
      for (const w of writes) {
        seen.push({
          label: w.label,
          row: await committed(w.label),
          plainJob: await inRedis(app.plainBull, w.plain),
          durableJob: await inRedis(app.durableBull, w.durable),
        });
      }
      expect(seen).toEqual(
        seen.map((s) => ({
          label: s.label,
          row: s.row,
          plainJob: s.row,
          durableJob: s.row,
        })),
      );
    }

    it.each(['ANALYZE TABLE', 'CHECK TABLE', 'OPTIMIZE TABLE'])(
      'should refuse the statement after %s (an implicit commit that answers with rows, like DDL) instead of committing it in autocommit mode',
      async (statement) => {
        const label = uniqueName('a7i-analyze');
        const writes: { label: string; plain: string; durable: string }[] = [];
        let after = 'not run';
        const outcome = await app.host
          .withTransaction(async () => {
            writes.push(await write(`${label}-before`));
            await app.host.manager.query(`${statement} tx_spec_orders`);
            after = await insert(`${label}-after`).then(
              () => 'ran',
              (e: Error) => e.constructor.name,
            );
            throw new Error('business rule refused the order');
          })
          .catch((e: unknown) => e);

        // As after DDL (README "DDL commits"): the statement after the implicit commit is
        // refused, and nothing of it is committed. (The caller got its own error, which says
        // "rolled back"; the row after is committed all the same, with no transaction around it.)
        expect({
          after,
          afterCommitted: await committed(`${label}-after`),
          scopeError: (outcome as Error).message,
        }).toEqual({
          after: 'TransactionAbortedError',
          afterCommitted: false,
          scopeError: 'business rule refused the order',
        });
        // The row before was committed by the statement: its durable job must follow it.
        expect(await committed(`${label}-before`)).toBe(true);
        await waitFor(
          () => inRedis(app.durableBull, writes[0].durable),
          'the durable job of the implicitly committed row',
          5_000,
        );
      },
    );

    it('should refuse the statement after a CALL whose procedure COMMITs and answers with rows', async () => {
      await admin.query('DROP PROCEDURE IF EXISTS a7_commits');
      await admin.query(
        'CREATE PROCEDURE a7_commits() BEGIN COMMIT; SELECT 1 AS one; END',
      );
      const label = uniqueName('a7i-call');
      let after = 'not run';
      const outcome = await app.host
        .withTransaction(async () => {
          await insert(`${label}-before`);
          await app.host.manager.query('CALL a7_commits()');
          after = await insert(`${label}-after`).then(
            () => 'ran',
            (e: Error) => e.constructor.name,
          );
          throw new Error('business rule refused the order');
        })
        .catch((e: Error) => e.message);
      expect({
        after,
        afterCommitted: await committed(`${label}-after`),
        outcome,
      }).toEqual({
        after: 'TransactionAbortedError',
        afterCommitted: false,
        outcome: 'business rule refused the order',
      });
    });

    it('should treat SET autocommit = 1 as the no-op it is under START TRANSACTION: the scope commits its rows and jobs', async () => {
      const label = uniqueName('a7i-autocommit');
      const writes: { label: string; plain: string; durable: string }[] = [];
      await app.host.withTransaction(async () => {
        writes.push(await write(`${label}-before`));
        await app.host.manager.query('SET autocommit = 1');
        writes.push(await write(`${label}-after`));
      });
      expect(await committed(`${label}-after`)).toBe(true);
      await expectJobsFollowRows(writes);
    });

    it('should roll back everything when a scope that ran SET autocommit = 1 throws', async () => {
      const label = uniqueName('a7i-autocommit-throw');
      const writes: { label: string; plain: string; durable: string }[] = [];
      await app.host
        .withTransaction(async () => {
          writes.push(await write(`${label}-before`));
          await app.host.manager.query('SET autocommit = 1');
          writes.push(await write(`${label}-after`));
          throw new Error('refused');
        })
        .catch(() => undefined);
      expect(await committed(`${label}-before`)).toBe(false);
      expect(await committed(`${label}-after`)).toBe(false);
      await expectJobsFollowRows(writes);
    });

    it('should let SET TRANSACTION inside a transaction fail alone (1568) and commit the rest with its jobs', async () => {
      const label = uniqueName('a7i-settx');
      const writes: { label: string; plain: string; durable: string }[] = [];
      const codes: string[] = [];
      await app.host.withTransaction(async () => {
        writes.push(await write(`${label}-1`));
        await app.host.manager
          .query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')
          .catch((e: { driverError?: { code?: string } }) =>
            codes.push(String(e.driverError?.code)),
          );
        writes.push(await write(`${label}-2`));
      });
      expect(codes).toEqual(['ER_CANT_CHANGE_TX_CHARACTERISTICS']);
      await expectJobsFollowRows(writes);
      expect(await committed(`${label}-2`)).toBe(true);
    });

    it('should leave no table lock behind on the pool after LOCK TABLES ended a scope', async () => {
      const label = uniqueName('a7i-lock');
      const error = await app.host
        .withTransaction(async () => {
          await insert(`${label}-before`);
          await app.host.manager.query('LOCK TABLES tx_spec_orders WRITE');
          await insert(`${label}-after`);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransactionAbortedError);

      // Another session (an application's other transaction) may write the table again.
      const runner = admin.createQueryRunner();
      try {
        await runner.query('SET SESSION lock_wait_timeout = 2');
        const blocked = await dbQuery(
          runner,
          'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
          [randomUUID(), `${label}-other`],
        ).then(
          () => undefined,
          (e: { driverError?: { code?: string } }) => e.driverError?.code,
        );
        expect(blocked).toBeUndefined();
      } finally {
        await runner.release();
      }
      // And the app's next transactions and its outbox still work.
      const next = uniqueName('a7i-lock-next');
      const w: { label: string; plain: string; durable: string }[] = [];
      await app.host.withTransaction(async () => {
        w.push(await write(next));
      });
      await expectJobsFollowRows(w);
    });

    it('should refuse statements after DDL in a NESTED scope and reject the outer scope (not only the savepoint)', async () => {
      const label = uniqueName('a7i-ddl-nested');
      const seen: string[] = [];
      const writes: { label: string; plain: string; durable: string }[] = [];
      const error = await app.host
        .withTransaction(async () => {
          writes.push(await write(`${label}-outer`));
          await app.host
            .withTransaction(
              async () => {
                writes.push(await write(`${label}-nested`));
                await app.host.manager.query(
                  'CREATE TABLE IF NOT EXISTS a7_ddl_probe (id int PRIMARY KEY)',
                );
                throw new Error('nested fails after its DDL');
              },
              { propagation: Propagation.Nested },
            )
            .catch((e: Error) => seen.push(e.message));
          await insert(`${label}-after`).catch((e: Error) =>
            seen.push(e.constructor.name),
          );
        })
        .catch((e: unknown) => e);
      expect(seen).toEqual([
        'nested fails after its DDL',
        'TransactionAbortedError',
      ]);
      expect(
        error instanceof TransactionAbortedError ||
          error instanceof UnexpectedRollbackError,
      ).toBe(true);
      expect(await committed(`${label}-after`)).toBe(false);
      // The outer and nested rows were committed by the DDL: their durable jobs must reach Redis.
      for (const w of writes) {
        if (await committed(w.label)) {
          await waitFor(
            () => inRedis(app.durableBull, w.durable),
            `durable job of committed row ${w.label}`,
            5_000,
          );
        }
      }
    });
  },
);
