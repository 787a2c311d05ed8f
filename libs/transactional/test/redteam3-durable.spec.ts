/**
 * Red-team round 3: durable adds inside NESTED scopes rolled back after the outbox row was written,
 * with the relay polling concurrently at graceMs 0; durable addBulk([]) and odd job ids.
 */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  getTransactionAwareQueueToken,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';
import { dbQuery } from './support/db';

const Q = uniqueName('rt3-ob');
const TABLE = 'tx_rt3_outbox';
const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NESTED = { propagation: Propagation.Nested };

let app: INestApplication;
let host: TransactionHost;
let q: TransactionAwareQueue<any>;
let bull: Queue;
let ds: DataSource;

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: Q, durable: true }],
    options: {
      outbox: {
        tableName: TABLE,
        fastPathTimeoutMs: 300,
        markBatchDelayMs: 1,
        relay: { enabled: true, graceMs: 0, pollIntervalMs: 5, batchSize: 50 },
      },
    },
    listen: false,
    poolSize: 20,
  });
  host = app.get(TransactionHost);
  q = app.get(getTransactionAwareQueueToken(Q));
  bull = bullQueue(app, Q);
  ds = app.get(DataSource);
});

afterAll(async () => {
  await closeLibApp(app, [Q]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

it('NESTED savepoint rolled back after its durable row was written (relay polling, graceMs 0): never enqueued; siblings exactly once', async () => {
  const keep: string[] = [];
  const drop: string[] = [];
  await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const k = uniqueName(`k${i}`);
      const d = uniqueName(`d${i}`);
      keep.push(k);
      drop.push(d);
      await host.withTransaction(async () => {
        await host.getRepository(Order).insert({ label: k });
        await q.add({ k }, { jobId: k });
        await host
          .withTransaction(async () => {
            await host.getRepository(Order).insert({ label: d });
            await q.add({ d }, { jobId: d });
            await sleep(30 + (i % 5) * 10); // relay polls meanwhile
            throw new Error('undo nested');
          }, NESTED)
          .catch(() => undefined);
        await sleep(20); // relay polls with the rolled-back savepoint's row gone, tx still open
      });
    }),
  );
  await waitFor(
    async () => {
      for (const k of keep) if (!(await bull.getJob(k))) return false;
      return true;
    },
    'kept jobs',
    10_000,
  );
  await sleep(300);
  for (const d of drop) expect(await bull.getJob(d)).toBeNull();
  const rows: { n: number }[] = await dbQuery(
    ds,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE queue = $1 AND dispatched_at IS NULL`,
    [Q],
  );
  expect(rows[0].n).toBe(0);
});

it('durable addBulk([]) inside a transaction resolves [] and writes no outbox row', async () => {
  const before: { n: number }[] = await dbQuery(
    ds,
    `SELECT count(*)::int AS n FROM ${TABLE}`,
  );
  const r = await host.withTransaction(() => q.addBulk([]));
  expect(r).toEqual([]);
  const after: { n: number }[] = await dbQuery(
    ds,
    `SELECT count(*)::int AS n FROM ${TABLE}`,
  );
  expect(after[0].n).toBe(before[0].n);
});

it("durable jobId '' and jobId with ':': the resolved id is the id of the job Bull holds (relayed once)", async () => {
  const m = uniqueName('m');
  const colon = `${uniqueName('c')}:x:y`;
  const [id1, id2] = await host.withTransaction(async () => [
    await q.add({ m }, { jobId: '' }),
    await q.add({ colon }, { jobId: colon }),
  ]);
  expect(id2).toBe(colon);
  await waitFor(
    async () => !!(await bull.getJob(id1)) && !!(await bull.getJob(id2)),
    'jobs',
    5000,
  );
  expect((await bull.getJob(id1))?.data).toEqual({ m });
  expect((await bull.getJob(colon))?.data).toEqual({ colon });
  await sleep(200);
  const counts = await bull.getJobCounts();
  void counts;
});
