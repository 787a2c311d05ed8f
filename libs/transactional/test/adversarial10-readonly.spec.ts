/**
 * adversarial10: READ ONLY transactions and isolation levels with durable queues. There is no
 * readOnly option: a user makes a transaction read-only with SET TRANSACTION READ ONLY (Postgres;
 * on MariaDB that statement is refused inside a transaction, covered by adversarial7). A durable
 * add() needs an outbox row: in a read-only transaction the promise is "a clear error or it
 * works, never a commit with a lost job". SERIALIZABLE: the loser of a serialization conflict
 * must leave no job and no outbox row; the winner's jobs all exist.
 */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  UnexpectedRollbackError,
} from '../src';
import { dbQuery } from './support/db';
import { itOnPostgres, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

const PLAIN = uniqueName('a10-ro-plain');
const DURABLE = uniqueName('a10-ro-durable');
const TABLE = `a10_ro_outbox_${process.pid}`;
const GRACE_MS = 300;

let app: INestApplication;
let host: TransactionHost;
let dataSource: DataSource;
let plain: TransactionAwareQueue<any>;
let durable: TransactionAwareQueue<any>;
let plainBull: Queue;
let durableBull: Queue;
const failures = watchProcessFailures();

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
    options: {
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        relay: { enabled: true, graceMs: GRACE_MS, pollIntervalMs: 50 },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  dataSource = app.get(DataSource);
  plain = app.get(getTransactionAwareQueueToken(PLAIN));
  durable = app.get(getTransactionAwareQueueToken(DURABLE));
  plainBull = bullQueue(app, PLAIN);
  durableBull = bullQueue(app, DURABLE);
  await dataSource.query(
    'CREATE TABLE IF NOT EXISTS a10_ro_counters (id int PRIMARY KEY, n int NOT NULL)',
  );
});

afterAll(async () => {
  await closeLibApp(app, [PLAIN, DURABLE]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

const settleAfterGrace = () =>
  new Promise((r) => setTimeout(r, GRACE_MS + 400));
const inRedis = async (bull: Queue, id: string) =>
  (await findJob(bull, id)) !== null;
const outboxRows = async (ids: string[]) =>
  dbQuery(dataSource, `SELECT id FROM ${TABLE} WHERE id = ANY($1)`, [ids]);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY, plain jobs only: commits and every job exists',
  async () => {
    const ids: string[] = [];
    await host.withTransaction(async () => {
      await host.manager.query('SET TRANSACTION READ ONLY');
      await host.manager.query('SELECT 1');
      ids.push(await plain.add({ ro: 1 }));
      ids.push(...(await plain.addBulk([{ data: { ro: 2 } }])));
    });
    for (const id of ids) expect(await inRedis(plainBull, id)).toBe(true);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY with a durable add() in the root scope: the scope rejects with the read-only error, no job (plain or durable) and no outbox row exist',
  async () => {
    const ids: string[] = [];
    const error = await host
      .withTransaction(async () => {
        await host.manager.query('SET TRANSACTION READ ONLY');
        ids.push(await plain.add({ ro: 'plain' }));
        ids.push(await durable.add({ ro: 'durable' }));
        return 'committed';
      })
      .then(
        (v) => v,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({
      message: expect.stringMatching(/read-only transaction/),
    });
    await settleAfterGrace();
    expect(await inRedis(plainBull, ids[0])).toBe(false);
    expect(await inRedis(durableBull, ids[1])).toBe(false);
    expect(await outboxRows([ids[1]])).toEqual([]);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY switched on after a durable add() (held for the COMMIT): the commit fails loudly, nothing is enqueued',
  async () => {
    const label = uniqueName('a10-ro-late');
    const ids: string[] = [];
    const error = await host
      .withTransaction(async () => {
        ids.push(await durable.add({ label }));
        ids.push(await plain.add({ label }));
        await host.manager.query('SET TRANSACTION READ ONLY');
        return 'committed';
      })
      .then(
        (v) => v,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({
      message: expect.stringMatching(/read-only transaction/),
    });
    await settleAfterGrace();
    expect(await inRedis(durableBull, ids[0])).toBe(false);
    expect(await inRedis(plainBull, ids[1])).toBe(false);
    expect(await outboxRows([ids[0]])).toEqual([]);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY with a durable add() in a NESTED scope that catches its failure: UnexpectedRollbackError for the savepoint, the outer commits its plain job',
  async () => {
    const ids: Record<string, string> = {};
    let nestedError: unknown;
    let addError: unknown;
    await host.withTransaction(async () => {
      await host.manager.query('SET TRANSACTION READ ONLY');
      ids.outer = await plain.add({ outer: true });
      nestedError = await host
        .withTransaction(
          async () => {
            ids.nestedPlain = await plain.add({ nested: true });
            addError = await durable.add({ nested: true }).then(
              () => undefined,
              (e: unknown) => e,
            );
          },
          { propagation: Propagation.Nested },
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
    });
    expect(addError).toMatchObject({
      message: expect.stringMatching(/read-only transaction/),
    });
    expect(nestedError).toBeInstanceOf(UnexpectedRollbackError);
    expect(await inRedis(plainBull, ids.outer)).toBe(true);
    expect(await inRedis(plainBull, ids.nestedPlain)).toBe(false);
  },
);

const isolationCase = (level: 'REPEATABLE READ' | 'SERIALIZABLE') =>
  level === 'REPEATABLE READ'
    ? itOnPostgres('MariaDB REPEATABLE READ lets the lost update through')
    : it;

describe.each(['REPEATABLE READ', 'SERIALIZABLE'] as const)('%s', (level) => {
  isolationCase(level)(
    'of two transactions that update one row and add durable jobs, a loser leaves no job and no outbox row, the winner all of its jobs',
    async () => {
      const key = Math.floor(Math.random() * 1e9);
      await dbQuery(
        dataSource,
        'INSERT INTO a10_ro_counters (id, n) VALUES ($1, 0)',
        [key],
      );
      let arrive!: () => void;
      const bothRead = new Promise<void>((r) => (arrive = r));
      let readers = 0;
      const run = (who: string) => {
        const ids: string[] = [];
        const done = host
          .withTransaction(
            async () => {
              const [{ n }] = await dbQuery(
                host.manager,
                'SELECT n FROM a10_ro_counters WHERE id = $1',
                [key],
              );
              ids.push(await durable.add({ who, n }));
              if (++readers === 2) arrive();
              await bothRead;
              await dbQuery(
                host.manager,
                'UPDATE a10_ro_counters SET n = $1 WHERE id = $2',
                [Number(n) + 1, key],
              );
              ids.push(await durable.add({ who, after: true }));
              ids.push(await plain.add({ who }));
            },
            { isolationLevel: level },
          )
          .then(
            () => ({ ok: true as const, ids }),
            (error: unknown) => ({ ok: false as const, ids, error }),
          );
        return done;
      };
      const results = await Promise.all([run('a'), run('b')]);
      const winners = results.filter((r) => r.ok);
      expect(winners).toHaveLength(1);
      const [{ n }] = await dbQuery(
        dataSource,
        'SELECT n::int AS n FROM a10_ro_counters WHERE id = $1',
        [key],
      );
      expect(Number(n)).toBe(1);
      const winner = winners[0];
      const loser = results.find((r) => !r.ok)!;
      await waitFor(
        async () =>
          (await inRedis(durableBull, winner.ids[0])) &&
          (await inRedis(durableBull, winner.ids[1])) &&
          (await inRedis(plainBull, winner.ids[2])),
        'the winner jobs',
        5000,
      );
      await settleAfterGrace();
      for (const id of loser.ids) {
        expect(await inRedis(durableBull, id)).toBe(false);
        expect(await inRedis(plainBull, id)).toBe(false);
      }
      expect(await outboxRows(loser.ids)).toEqual([]);
    },
  );
});
