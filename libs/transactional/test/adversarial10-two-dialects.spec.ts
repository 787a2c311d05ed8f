/**
 * adversarial10: two DataSources of different databases in one application: `default` on the
 * run's database (Postgres, or MariaDB with LIB_DB=mariadb) and `analytics` on the other one,
 * each with a plain and a durable queue bound to it, one outbox table per database. Jobs must
 * follow the transaction of their queue's connection, whatever the other connection's
 * transaction does; hooks registered on one connection's host run after that connection's
 * commit with no transaction bound; durable jobs the fast path leaves are relayed by the relay
 * of their own connection (each dialect's store).
 */
import { BullModule as Bull3Module } from '@nestjs/bull';
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import { Client } from 'pg';
import { createConnection } from 'mysql2/promise';
import { DataSource, DataSourceOptions } from 'typeorm';
import {
  createOutboxMigration,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
  Propagation,
  TransactionalModule,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  onMariaDb,
  testDataSourceOptions,
  testDatabaseName,
  testRedisUrl,
  uniqueName,
} from './support/env';
import { bullQueue, closeLibApp, findJob, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';
import { LIB_QUEUE } from './support/queue-kind';
import { watchProcessFailures } from './support/process-failures';

const TABLE = `a10_2d_outbox_${process.pid}`;
const DP = uniqueName('a10-2d-dp');
const DD = uniqueName('a10-2d-dd');
const AP = uniqueName('a10-2d-ap');
const AD = uniqueName('a10-2d-ad');

/** The database the run does not use, as the `analytics` DataSource. */
function otherOptions(): DataSourceOptions {
  const name = testDatabaseName();
  return onMariaDb
    ? {
        type: 'postgres',
        url: `${process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'}`.replace(
          /\/[^/]*$/,
          `/${name}`,
        ),
      }
    : {
        type: 'mariadb',
        url: `${process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/mysql'}`.replace(
          /\/[^/]*$/,
          `/${name}`,
        ),
      };
}

async function ensureOtherDatabase() {
  const name = testDatabaseName();
  if (onMariaDb) {
    const admin = new Client({
      connectionString:
        process.env.DATABASE_URL ??
        'postgres://postgres@127.0.0.1:5432/postgres',
    });
    await admin.connect();
    const exists = await admin.query(
      'SELECT 1 FROM pg_database WHERE datname = $1',
      [name],
    );
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
  } else {
    const url = new URL(
      process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/mysql',
    );
    const admin = await createConnection({
      host: url.hostname,
      port: Number(url.port || 3306),
      user: decodeURIComponent(url.username || 'root'),
      password: decodeURIComponent(url.password),
    });
    await admin.query(
      `CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    );
    await admin.end();
  }
}

async function createOutboxOn(options: DataSourceOptions) {
  const ds = new DataSource(options);
  await ds.initialize();
  try {
    const mysql = options.type === 'mariadb';
    await ds.query(
      mysql
        ? `DROP TABLE IF EXISTS \`${TABLE}\``
        : `DROP TABLE IF EXISTS "${TABLE}"`,
    );
    const Migration = createOutboxMigration({ tableName: TABLE });
    const qr = ds.createQueryRunner();
    try {
      await new Migration().up(qr);
    } finally {
      await qr.release();
    }
  } finally {
    await ds.destroy();
  }
}

let app: INestApplication;
let d: TransactionHost;
let a: TransactionHost;
let dds: DataSource;
let ads: DataSource;
const q: Record<string, TransactionAwareQueue<any>> = {};
const b: Record<string, Queue> = {};
const failures = watchProcessFailures();

async function boot(fastPathTimeoutMs: number) {
  const queues =
    LIB_QUEUE === 'bull'
      ? [
          Bull3Module.forRoot({ url: testRedisUrl() }),
          Bull3Module.registerQueue(
            { name: DP },
            { name: DD },
            { name: AP },
            { name: AD },
          ),
        ]
      : [
          BullMQModule.forRoot({
            connection: { host: '127.0.0.1', port: 6379 },
          }),
          BullMQModule.registerQueue(
            { name: DP },
            { name: DD },
            { name: AP },
            { name: AD },
          ),
        ];
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        ...testDataSourceOptions(),
        entities: [Order],
        synchronize: true,
        extra: onMariaDb ? { connectionLimit: 10 } : { max: 10 },
      }),
      TypeOrmModule.forRoot({
        name: 'analytics',
        ...(otherOptions() as any),
        entities: [Order],
        synchronize: true,
        extra: onMariaDb ? { max: 10 } : { connectionLimit: 10 },
      }),
      ...queues,
      TransactionalModule.forRoot({
        connectionNames: ['default', 'analytics'],
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 1,
          fastPathTimeoutMs,
          relay: { enabled: true, graceMs: 300, pollIntervalMs: 50 },
        },
      }),
      TransactionalModule.registerQueue(
        { name: DP },
        { name: DD, durable: true },
        { name: AP, connectionName: 'analytics' },
        { name: AD, connectionName: 'analytics', durable: true },
      ),
    ],
  }).compile();
  const nest = moduleRef.createNestApplication({
    logger: process.env.TEST_LOGS ? undefined : false,
  });
  await nest.init();
  return nest;
}

beforeAll(async () => {
  await ensureOtherDatabase();
  await Promise.all([
    createOutboxOn(testDataSourceOptions()),
    createOutboxOn(otherOptions()),
  ]);
  app = await boot(300);
  d = app.get(getTransactionHostToken('default'));
  a = app.get(getTransactionHostToken('analytics'));
  dds = app.get(getDataSourceToken());
  ads = app.get(getDataSourceToken('analytics'));
  for (const name of [DP, DD, AP, AD]) {
    q[name] = app.get(getTransactionAwareQueueToken(name));
    b[name] = bullQueue(app, name);
  }
});

afterAll(async () => {
  await closeLibApp(app, [DP, DD, AP, AD]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

const insert = (host: TransactionHost, label: string) =>
  host.getRepository(Order).insert({ id: crypto.randomUUID(), label });

async function count(ds: DataSource, label: string) {
  return ds.getRepository(Order).countBy({ label });
}

const exists = async (name: string, id: string) =>
  (await findJob(b[name], id)) !== null;

describe.each([
  ['analytics inside default', 'inner-a'],
  ['default inside analytics', 'inner-d'],
])('%s', (_title, shape) => {
  it.each([
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ])(
    'outer fails: %s, inner fails: %s: each job follows its own connection',
    async (outerFails, innerFails) => {
      const tag = uniqueName('a10-2d');
      const [outer, inner] = shape === 'inner-a' ? [d, a] : [a, d];
      const [op, od, ip, id] =
        shape === 'inner-a' ? [DP, DD, AP, AD] : [AP, AD, DP, DD];
      const ids: Record<string, string> = {};
      await outer
        .withTransaction(async () => {
          await insert(outer, `${tag}-outer`);
          ids.op = await q[op].add({ tag });
          ids.od = await q[od].add({ tag });
          await inner
            .withTransaction(async () => {
              await insert(inner, `${tag}-inner`);
              ids.ip = await q[ip].add({ tag });
              ids.id = await q[id].add({ tag });
              // The outer connection's queues have no transaction of theirs here? They do:
              // the outer connection's scope is still bound.
              ids.op2 = await q[op].add({ tag, fromInner: true });
              ids.od2 = await q[od].add({ tag, fromInner: true });
              if (innerFails) throw new Error('inner fails');
            })
            .catch(() => undefined);
          if (outerFails) throw new Error('outer fails');
        })
        .catch(() => undefined);
      const outerDs = shape === 'inner-a' ? dds : ads;
      const innerDs = shape === 'inner-a' ? ads : dds;
      expect(await count(outerDs, `${tag}-outer`)).toBe(outerFails ? 0 : 1);
      expect(await count(innerDs, `${tag}-inner`)).toBe(innerFails ? 0 : 1);
      const want: [string, string, boolean][] = [
        [op, ids.op, !outerFails],
        [od, ids.od, !outerFails],
        [ip, ids.ip, !innerFails],
        [id, ids.id, !innerFails],
        [op, ids.op2, !outerFails],
        [od, ids.od2, !outerFails],
      ];
      await waitFor(
        async () => {
          for (const [name, jid, present] of want)
            if (present && !(await exists(name, jid))) return false;
          return true;
        },
        'committed jobs',
        5000,
      );
      await new Promise((r) => setTimeout(r, 700));
      for (const [name, jid, present] of want) {
        expect({ name, present: await exists(name, jid) }).toEqual({
          name,
          present,
        });
      }
    },
  );
});

it('an afterCommit hook on one connection runs after that commit with no transaction bound on either connection', async () => {
  const seen: Record<string, boolean> = {};
  await d.withTransaction(async () => {
    await a.withTransaction(async () => {
      await insert(a, uniqueName('a10-2d-h'));
      await a.afterCommit(() => {
        seen.a = a.isActive;
        seen.d = d.isActive;
      });
    });
    seen.dAfter = d.isActive;
    // Registered on the analytics host with no analytics transaction: runs at once.
    await a.afterCommit(() => void (seen.ranAtOnce = true));
    expect(seen.ranAtOnce).toBe(true);
  });
  expect(seen).toEqual({ a: false, d: false, dAfter: true, ranAtOnce: true });
});

it('NESTED and REQUIRES_NEW on the other connection inside a transaction: savepoint rollback drops only its own jobs', async () => {
  const tag = uniqueName('a10-2d-sp');
  const ids: Record<string, string> = {};
  await d
    .withTransaction(async () => {
      await a.withTransaction(async () => {
        ids.aRoot = await q[AD].add({ tag });
        await a
          .withTransaction(
            async () => {
              ids.aNested = await q[AD].add({ tag });
              ids.dFromANested = await q[DD].add({ tag });
              await d.withTransaction(
                async () => {
                  ids.dNew = await q[DD].add({ tag });
                },
                { propagation: Propagation.RequiresNew },
              );
              throw new Error('analytics savepoint rolls back');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
      });
      throw new Error('default rolls back');
    })
    .catch(() => undefined);
  await waitFor(
    async () => (await exists(AD, ids.aRoot)) && (await exists(DD, ids.dNew)),
    'committed jobs',
    5000,
  );
  await new Promise((r) => setTimeout(r, 700));
  expect(await exists(AD, ids.aNested)).toBe(false);
  // Added to the default queue in the default transaction, which rolled back.
  expect(await exists(DD, ids.dFromANested)).toBe(false);
});

it('durable jobs the fast path leaves to the relay are relayed on both dialects', async () => {
  const tag = uniqueName('a10-2d-relay');
  const ids: Record<string, string> = {};
  // A hook before the jobs that outlasts the grace period: their fast path has no time left.
  await d.withTransaction(async () => {
    await a.withTransaction(async () => {
      await a.afterCommit(() => new Promise((r) => setTimeout(r, 400)));
      ids.a = await q[AD].add({ tag });
    });
    await d.afterCommit(() => new Promise((r) => setTimeout(r, 400)));
    ids.d = await q[DD].add({ tag });
  });
  await waitFor(
    async () => (await exists(AD, ids.a)) && (await exists(DD, ids.d)),
    'relayed jobs on both connections',
    8000,
  );
  expect(
    q[AD].stats.leftToRelay + q[DD].stats.leftToRelay,
  ).toBeGreaterThanOrEqual(2);
});
