/**
 * adversarial10: READ ONLY transactions and isolation levels with durable queues. There is no
 * readOnly option: a user makes a transaction read-only with SET TRANSACTION READ ONLY (Postgres;
 * on MariaDB that statement is refused inside a transaction, covered by adversarial7). A durable
 * add() needs an outbox row: in a read-only transaction the promise is "a clear error or it
 * works, never a commit with a lost job". SERIALIZABLE: the loser of a serialization conflict
 * must leave no job and no outbox row; the winner's jobs all exist.
 */
import type { Queue } from 'bull';
import { Propagation, UnexpectedRollbackError } from '../src';
import { dbQuery } from './support/db';
import { itOnPostgres, uniqueName } from './support/env';
import { findJob, waitFor } from './support/lib-app';
import { useAdversarialApp } from './support/adversarial-app';

const PLAIN = uniqueName('a10-ro-plain');
const DURABLE = uniqueName('a10-ro-durable');
const TABLE = `a10_ro_outbox_${process.pid}`;
const GRACE_MS = 300;

const fx = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  outbox: {
    markBatchDelayMs: 1,
    relay: { enabled: true, graceMs: GRACE_MS, pollIntervalMs: 50 },
  },
});

beforeAll(() =>
  fx.ds.query(
    'CREATE TABLE IF NOT EXISTS a10_ro_counters (id int PRIMARY KEY, n int NOT NULL)',
  ),
);

const settleAfterGrace = () =>
  new Promise((r) => setTimeout(r, GRACE_MS + 400));
const inRedis = async (bull: Queue, id: string) =>
  (await findJob(bull, id)) !== null;
const outboxRows = async (ids: string[]) =>
  dbQuery(fx.ds, `SELECT id FROM ${TABLE} WHERE id = ANY($1)`, [ids]);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY, fx.plain jobs only: commits and every job exists',
  async () => {
    const ids: string[] = [];
    await fx.host.withTransaction(async () => {
      await fx.host.manager.query('SET TRANSACTION READ ONLY');
      await fx.host.manager.query('SELECT 1');
      ids.push(await fx.plain.add({ ro: 1 }));
      ids.push(...(await fx.plain.addBulk([{ data: { ro: 2 } }])));
    });
    for (const id of ids) expect(await inRedis(fx.plainBull, id)).toBe(true);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY with a fx.durable add() in the root scope: the scope rejects with the read-only error, no job (fx.plain or fx.durable) and no outbox row exist',
  async () => {
    const ids: string[] = [];
    const error = await fx.host
      .withTransaction(async () => {
        await fx.host.manager.query('SET TRANSACTION READ ONLY');
        ids.push(await fx.plain.add({ ro: 'plain' }));
        ids.push(await fx.durable.add({ ro: 'durable' }));
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
    expect(await inRedis(fx.plainBull, ids[0])).toBe(false);
    expect(await inRedis(fx.durableBull, ids[1])).toBe(false);
    expect(await outboxRows([ids[1]])).toEqual([]);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY switched on after a fx.durable add() (held for the COMMIT): the commit fails loudly, nothing is enqueued',
  async () => {
    const label = uniqueName('a10-ro-late');
    const ids: string[] = [];
    const error = await fx.host
      .withTransaction(async () => {
        ids.push(await fx.durable.add({ label }));
        ids.push(await fx.plain.add({ label }));
        await fx.host.manager.query('SET TRANSACTION READ ONLY');
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
    expect(await inRedis(fx.durableBull, ids[0])).toBe(false);
    expect(await inRedis(fx.plainBull, ids[1])).toBe(false);
    expect(await outboxRows([ids[0]])).toEqual([]);
  },
);

itOnPostgres('SET TRANSACTION is Postgres syntax inside a transaction')(
  'READ ONLY with a fx.durable add() in a NESTED scope that catches its failure: UnexpectedRollbackError for the savepoint, the outer commits its fx.plain job',
  async () => {
    const ids: Record<string, string> = {};
    let nestedError: unknown;
    let addError: unknown;
    await fx.host.withTransaction(async () => {
      await fx.host.manager.query('SET TRANSACTION READ ONLY');
      ids.outer = await fx.plain.add({ outer: true });
      nestedError = await fx.host
        .withTransaction(
          async () => {
            ids.nestedPlain = await fx.plain.add({ nested: true });
            addError = await fx.durable.add({ nested: true }).then(
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
    expect(await inRedis(fx.plainBull, ids.outer)).toBe(true);
    expect(await inRedis(fx.plainBull, ids.nestedPlain)).toBe(false);
  },
);

const isolationCase = (level: 'REPEATABLE READ' | 'SERIALIZABLE') =>
  level === 'REPEATABLE READ'
    ? itOnPostgres('MariaDB REPEATABLE READ lets the lost update through')
    : it;

describe.each(['REPEATABLE READ', 'SERIALIZABLE'] as const)('%s', (level) => {
  isolationCase(level)(
    'of two transactions that update one row and add fx.durable jobs, a loser leaves no job and no outbox row, the winner all of its jobs',
    async () => {
      const key = Math.floor(Math.random() * 1e9);
      await dbQuery(
        fx.ds,
        'INSERT INTO a10_ro_counters (id, n) VALUES ($1, 0)',
        [key],
      );
      let arrive!: () => void;
      const bothRead = new Promise<void>((r) => (arrive = r));
      let readers = 0;
      const run = (who: string) => {
        const ids: string[] = [];
        const done = fx.host
          .withTransaction(
            async () => {
              const [{ n }] = await dbQuery(
                fx.host.manager,
                'SELECT n FROM a10_ro_counters WHERE id = $1',
                [key],
              );
              ids.push(await fx.durable.add({ who, n }));
              if (++readers === 2) arrive();
              await bothRead;
              await dbQuery(
                fx.host.manager,
                'UPDATE a10_ro_counters SET n = $1 WHERE id = $2',
                [Number(n) + 1, key],
              );
              ids.push(await fx.durable.add({ who, after: true }));
              ids.push(await fx.plain.add({ who }));
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
        fx.ds,
        'SELECT n::int AS n FROM a10_ro_counters WHERE id = $1',
        [key],
      );
      expect(Number(n)).toBe(1);
      const winner = winners[0];
      const loser = results.find((r) => !r.ok)!;
      await waitFor(
        async () =>
          (await inRedis(fx.durableBull, winner.ids[0])) &&
          (await inRedis(fx.durableBull, winner.ids[1])) &&
          (await inRedis(fx.plainBull, winner.ids[2])),
        'the winner jobs',
        5000,
      );
      await settleAfterGrace();
      for (const id of loser.ids) {
        expect(await inRedis(fx.durableBull, id)).toBe(false);
        expect(await inRedis(fx.plainBull, id)).toBe(false);
      }
      expect(await outboxRows(loser.ids)).toEqual([]);
    },
  );
});
