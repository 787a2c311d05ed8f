/**
 * Red-team round 2: the outbox relay. `relayOnce()` from many callers at once (each row relayed
 * exactly once), rows of a transaction that is still open or never commits (never relayed, even
 * with graceMs 0), rows of a queue that is no longer registered, durable jobs with
 * removeOnComplete processed before the relay runs.
 */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  TransactionalOutbox,
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
import { backendId, dbQuery, killBackend } from './support/db';

const Q = uniqueName('rt2-ob');
const GONE = uniqueName('rt2-ob-gone');
const TABLE = 'tx_rt2_outbox';
const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let app: INestApplication;
let host: TransactionHost;
let q: TransactionAwareQueue<any>;
let bull: Queue;
let outbox: TransactionalOutbox;
let ds: DataSource;

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: Q, durable: true }],
    options: {
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 5,
        relay: { enabled: false, graceMs: 0, batchSize: 7 },
      },
    },
    listen: false,
    poolSize: 30,
  });
  host = app.get(TransactionHost);
  q = app.get(getTransactionAwareQueueToken(Q));
  bull = bullQueue(app, Q);
  outbox = app.get(TransactionalOutbox);
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

/** Writes `n` pending rows as a process that crashed after COMMIT would leave them. */
async function crashedRows(queue: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, () => uniqueName('row'));
  for (const id of ids) {
    await dbQuery(
      ds,
      `INSERT INTO ${TABLE} (id, queue, job_name, data, opts, available_at)
       VALUES ($1, $2, '__default__', $3, $4, clock_timestamp() - interval '1 second')`,
      [id, queue, JSON.stringify({ id }), JSON.stringify({ jobId: id })],
    );
  }
  return ids;
}

it('relayOnce() from 25 concurrent callers relays each of 60 rows exactly once', async () => {
  const ids = await crashedRows(Q, 60);
  const counts = await Promise.all(
    Array.from({ length: 25 }, () => outbox.relayOnce()),
  );
  // callers that found nothing return 0; a second round picks up what batchSize left
  let total = counts.reduce((s, n) => s + n, 0);
  while (total < ids.length) {
    const more = await outbox.relayOnce();
    if (more === 0) break;
    total += more;
  }
  expect(total).toBe(ids.length);
  const rows: { dispatched: number }[] = await dbQuery(
    ds,
    `SELECT count(*)::int AS dispatched FROM ${TABLE} WHERE id = ANY($1::text[]) AND dispatched_at IS NOT NULL`,
    [ids],
  );
  expect(rows[0].dispatched).toBe(ids.length);
  for (const id of ids) expect(await bull.getJob(id)).not.toBeNull();
});

it('rows of a transaction still open are never relayed (graceMs 0), and are gone after its rollback', async () => {
  const label = uniqueName('open');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const tx = host
    .withTransaction(async () => {
      await host.getRepository(Order).insert({ label });
      await q.add({ label }, { jobId: label });
      await gate;
      throw new Error('crash before commit');
    })
    .catch(() => undefined);
  await sleep(50);
  expect(await outbox.relayOnce()).toBe(0);
  expect(await bull.getJob(label)).toBeNull();
  release();
  await tx;
  expect(await outbox.relayOnce()).toBe(0);
  expect(await bull.getJob(label)).toBeNull();
  const left = await dbQuery(
    ds,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE opts->>'jobId' = $1`,
    [label],
  );
  expect(left[0].n).toBe(0);
});

it('rows of a transaction killed (pg_terminate_backend, KILL CONNECTION) before COMMIT are never relayed', async () => {
  const label = uniqueName('killed');
  let pid: number | undefined;
  const tx = host
    .withTransaction(async () => {
      await q.add({ label }, { jobId: label });
      pid = await backendId(host.manager);
      await sleep(300);
      await dbQuery(host.manager, 'SELECT 1');
    })
    .then(
      () => 'committed',
      (e: Error) => e.name,
    );
  await waitFor(() => pid !== undefined, 'the pid');
  await killBackend(ds, pid!);
  expect(await tx).not.toBe('committed');
  expect(await outbox.relayOnce()).toBe(0);
  await sleep(50);
  expect(await bull.getJob(label)).toBeNull();
});

it('rows of a queue no longer registered stay pending, visible in stats, and do not break the relay of other rows', async () => {
  const gone = await crashedRows(GONE, 3);
  const mine = await crashedRows(Q, 2);
  expect(await outbox.relayOnce()).toBe(2);
  for (const id of mine) expect(await bull.getJob(id)).not.toBeNull();
  const pending = await dbQuery(
    ds,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE id = ANY($1::text[]) AND dispatched_at IS NULL`,
    [gone],
  );
  expect(pending[0].n).toBe(3);
  const stats = await outbox.stats();
  // README: stats report pending rows and the oldest pending age: the orphaned rows are
  // the only sign of them, so they must be counted
  expect(stats).toMatchObject({ pending: expect.any(Number) });
  expect(
    (stats as unknown as { pending: number }).pending,
  ).toBeGreaterThanOrEqual(3);
  await dbQuery(ds, `DELETE FROM ${TABLE} WHERE queue = $1`, [GONE]);
});

it('a durable job with removeOnComplete, processed and removed, is not relayed again', async () => {
  const label = uniqueName('roc');
  const processed: string[] = [];
  void bull.process(async (job) => {
    processed.push(String(job.id));
  });
  await host.withTransaction(async () => {
    await q.add({ label }, { jobId: label, removeOnComplete: true });
  });
  // graceMs 0: every durable job goes through the relay
  await waitFor(
    async () => (await outbox.relayOnce()) >= 0 && processed.includes(label),
    'relay and processing',
  );
  await waitFor(async () => (await bull.getJob(label)) === null, 'removal');
  await waitFor(
    async () =>
      (
        await dbQuery(
          ds,
          `SELECT dispatched_at FROM ${TABLE} WHERE opts->>'jobId' = $1 AND dispatched_at IS NOT NULL`,
          [label],
        )
      ).length === 1,
    'the mark',
  );
  expect(await outbox.relayOnce()).toBe(0);
  await sleep(100);
  expect(processed.filter((id) => id === label)).toHaveLength(1);
});
