/**
 * Two Nest applications in one process (two databases): a queue of application A, called while
 * only application B has a transaction open, is outside any transaction of A's, as A's
 * `TransactionHost` sees it (`isActive` false). Its jobs follow A's `whenNoTransaction` policy;
 * they are never deferred to B's transaction, nor (durable) written to B's database.
 */
import { INestApplication } from '@nestjs/common';
import {
  getTransactionAwareQueueToken,
  NoTransactionError,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { ensureDatabase } from './support/db';
import { testDatabaseUrl, uniqueName } from './support/env';
import { closeLibApp, createLibApp, inRedis } from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';

const SECOND_DB = `transactional_test_b${process.env.TEST_DB_SUFFIX ?? ''}`;
const TABLE = `tx_spec_two_apps_outbox_${process.pid}`;
const PLAIN = uniqueName('two-apps-plain');
const DURABLE = uniqueName('two-apps-durable');
const STRICT = uniqueName('two-apps-strict');

describe('a queue of one application inside another application’s transaction', () => {
  let a: INestApplication;
  let b: INestApplication;
  let bHost: TransactionHost;
  const queueOfA = (name: string) =>
    a.get<TransactionAwareQueue<any>>(getTransactionAwareQueueToken(name));

  beforeAll(async () => {
    await ensureDatabase(SECOND_DB);
    await createOutboxTable(TABLE);
    await createOutboxTable(TABLE, SECOND_DB);
    const outbox = { tableName: TABLE, relay: { enabled: false } };
    a = await createLibApp({
      queues: [
        { name: PLAIN },
        { name: DURABLE, durable: true },
        { name: STRICT, whenNoTransaction: 'throw' },
      ],
      options: { outbox },
      listen: false,
    });
    b = await createLibApp({
      queues: [],
      options: { outbox },
      listen: false,
      databaseUrl: testDatabaseUrl(SECOND_DB),
    });
    bHost = b.get(TransactionHost);
  });

  afterAll(async () => {
    await closeLibApp(a, [PLAIN, DURABLE, STRICT]);
    await b?.close();
  });

  it('A’s host sees no transaction there', async () => {
    const seen = await bHost.withTransaction(async () => ({
      a: a.get(TransactionHost).isActive,
      b: bHost.isActive,
    }));
    expect(seen).toEqual({ a: false, b: true });
  });

  it('a plain job is enqueued at once (A’s default policy), and stays when B rolls back', async () => {
    let id = '';
    let inRedisBeforeEnd = false;
    await bHost
      .withTransaction(async () => {
        id = await queueOfA(PLAIN).add({ n: 1 });
        inRedisBeforeEnd = await inRedis(queueOfA(PLAIN).queue as any, id);
        throw new Error('B rolls back');
      })
      .catch(() => undefined);
    expect(inRedisBeforeEnd).toBe(true);
    expect(await inRedis(queueOfA(PLAIN).queue as any, id)).toBe(true);
  });

  it('a durable job is not written to B’s outbox: enqueued at once, no row in either database', async () => {
    let id = '';
    const bRows = async () =>
      Number(
        (
          await b
            .get(TransactionHost)
            .manager.query(`SELECT count(*) AS n FROM ${TABLE}`)
        )[0].n,
      );
    const before = await bRows();
    await bHost
      .withTransaction(async () => {
        id = await queueOfA(DURABLE).add({ n: 2 });
        throw new Error('B rolls back');
      })
      .catch(() => undefined);
    expect(await bRows()).toBe(before);
    expect(await inRedis(queueOfA(DURABLE).queue as any, id)).toBe(true);
  });

  it('whenNoTransaction: throw refuses the add with NoTransactionError', async () => {
    const error = await bHost
      .withTransaction(() => queueOfA(STRICT).add({ n: 3 }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoTransactionError);
  });
});
