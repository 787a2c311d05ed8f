/**
 * adversarial6 (fast path): durable jobs with the fast path ON (graceMs 600 ms, fastPathTimeoutMs
 * 150 ms) and the relay polling, under REAL Redis faults on an own redis-server (AOF, appendfsync
 * always): SIGSTOP, SIGKILL + restart, CLIENT PAUSE ALL/WRITE, DEBUG SLEEP, memory full. Faults
 * are shorter than the lease (6 s) but often longer than the fast path's budget and than the
 * grace period, so the fast path's add in flight and the relay's hand-over of the same row both
 * reach Redis. Jobs are kept once processed (no removeOnComplete: the README's at-least-once
 * caveat is about removed jobs), so each committed job must be in Redis and run exactly once; a
 * rolled-back one never; outbox and queue stats must agree; no unhandled rejection.
 */
import { INestApplication } from '@nestjs/common';
import Bull from 'bull';
import { Worker } from 'bullmq';
import * as fc from 'fast-check';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { LIB_QUEUE } from './support/queue-kind';
import { watchProcessFailures } from './support/process-failures';
import {
  fault,
  FaultKind,
  PersistentRedis,
  startPersistentRedis,
} from './support/persistent-redis';

jest.setTimeout(90_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const QUEUE = uniqueName('a6-fast');
const TABLE = `a6_fast_outbox_${process.pid}`;

const failures = watchProcessFailures();
let redis: PersistentRedis;
let app: INestApplication;
let host: TransactionHost;
let outbox: TransactionalOutbox;
let queue: TransactionAwareQueue<any>;
const runs = new Map<string, number>();
let consumer: { close(): Promise<unknown> } | undefined;
const consumerErrors: unknown[] = [];

function startConsumer() {
  const handler = async (job: { id?: string | number | null }) => {
    const id = String(job.id);
    runs.set(id, (runs.get(id) ?? 0) + 1);
  };
  if (LIB_QUEUE === 'bull') {
    const q = new Bull(QUEUE, redis.url);
    q.on('error', (e) => consumerErrors.push(e));
    void q.process('*', 4, handler);
    consumer = q;
  } else {
    const w = new Worker(QUEUE, handler, {
      connection: { host: '127.0.0.1', port: redis.port },
      concurrency: 4,
    });
    w.on('error', (e) => consumerErrors.push(e));
    consumer = w;
  }
}

beforeAll(async () => {
  redis = await startPersistentRedis();
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: QUEUE, durable: true, bull: { url: redis.url } }],
    options: {
      afterCommitTimeoutMs: 1000,
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        fastPathTimeoutMs: 150,
        relay: {
          graceMs: 600,
          leaseMs: 6000,
          redisTimeoutMs: 300,
          pollIntervalMs: 30,
          maxBackoffMs: 200,
          batchSize: 50,
        },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  outbox = app.get(TransactionalOutbox);
  queue = app.get(getTransactionAwareQueueToken(QUEUE));
  startConsumer();
});

afterAll(async () => {
  redis?.cont();
  await consumer?.close().catch(() => undefined);
  await closeLibApp(app, [QUEUE]).catch(() => undefined);
  await redis?.dispose();
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

interface TxSpec {
  startMs: number;
  jobs: number;
  commit: boolean;
}
interface FaultSpec {
  kind: FaultKind;
  atMs: number;
  ms: number;
}

async function scenario(tag: string, txs: TxSpec[], faults: FaultSpec[]) {
  const committed: string[] = [];
  const dropped: string[] = [];
  const answeredMs: number[] = [];
  const t0 = Date.now();
  const faultLane = (async () => {
    for (const f of [...faults].sort((a, b) => a.atMs - b.atMs)) {
      const wait = t0 + f.atMs - Date.now();
      if (wait > 0) await sleep(wait);
      await fault(redis, f.kind, f.ms);
    }
  })();
  const txLane = Promise.all(
    txs.map(async (t, i) => {
      await sleep(t.startMs);
      const ids: string[] = [];
      const started = Date.now();
      try {
        await host.withTransaction(async () => {
          await host.getRepository(Order).insert({ label: `${tag}-${i}` });
          for (let j = 0; j < t.jobs; j++) {
            ids.push(
              await queue.add(
                'work',
                { tag, i, j },
                { jobId: `${tag}-${i}-${j}` },
              ),
            );
          }
          if (!t.commit) throw new Error('rollback on purpose');
        });
        committed.push(...ids);
      } catch (error) {
        if (t.commit) throw error;
        dropped.push(...ids);
      } finally {
        answeredMs.push(Date.now() - started);
      }
    }),
  );
  await Promise.all([faultLane, txLane]);
  return { committed, dropped, answeredMs };
}

/**
 * Whether the job `id` reached Redis: the consumer ran it, or Redis holds it with its data. (A
 * worker whose connection is killed between Bull's BRPOPLPUSH and its lock script leaves the job
 * in the active list until the queue library's stalled-job check, 30 s later: the job is in
 * Redis, its run is the worker's business.)
 */
async function delivered(id: string): Promise<boolean> {
  if (runs.has(id)) return true;
  return (
    (await redis
      .cli('HEXISTS', `bull:${QUEUE}:${id}`, 'data')
      .catch(() => '0')) === '1'
  );
}

async function allDelivered(ids: string[]): Promise<boolean> {
  for (const id of ids) if (!(await delivered(id))) return false;
  return true;
}

async function pendingOf(tag: string): Promise<number> {
  const [row] = await dbQuery(
    host.manager.connection,
    `SELECT count(*)::int AS n FROM ${TABLE} WHERE dispatched_at IS NULL AND opts->>'jobId' LIKE $1`,
    [`${tag}-%`],
  );
  return row.n;
}

async function diagnose(ids: string[]): Promise<string> {
  const out: string[] = [];
  for (const id of ids) {
    const hash = await redis
      .cli('HGETALL', `bull:${QUEUE}:${id}`)
      .catch((e) => `cli error ${String(e)}`);
    const [row] = await dbQuery(
      host.manager.connection,
      `SELECT dispatched_at, available_at, relay_attempts, last_error FROM ${TABLE} WHERE opts->>'jobId' = $1`,
      [id],
    );
    out.push(
      `${id}: redis=${JSON.stringify(hash.slice(0, 200))} row=${JSON.stringify(row)}`,
    );
  }
  return `${out.join('\n')}\nrelay=${JSON.stringify(outbox.relayStats)} queue=${JSON.stringify(queue.stats)} consumerErrors=${consumerErrors.length} ${String(consumerErrors[consumerErrors.length - 1])}`;
}

const faultArb = fc.record({
  kind: fc.constantFrom<FaultKind>(
    'sigstop',
    'kill-restart',
    'client-pause-all',
    'client-pause-write',
    'debug-sleep',
    'oom',
    'client-kill',
  ),
  atMs: fc.integer({ min: 0, max: 1200 }),
  ms: fc.integer({ min: 100, max: 1500 }),
});
const txArb = fc.record({
  startMs: fc.integer({ min: 0, max: 1500 }),
  jobs: fc.integer({ min: 1, max: 3 }),
  commit: fc.boolean(),
});

it('random Redis faults (some longer than the grace period) with the fast path on: each committed job in Redis and never run twice, no rolled-back job, callers answered fast, stats agree', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(txArb, { minLength: 4, maxLength: 12 }),
      fc.array(faultArb, { minLength: 1, maxLength: 3 }),
      async (txs, faults) => {
        const tag = `f${run++}-${Date.now().toString(36)}`;
        const before = {
          relayed: outbox.relayStats.relayed,
          dropped: queue.stats.droppedOnRollback,
          deferred: queue.stats.deferred,
          enqueued: queue.stats.enqueued,
          leftToRelay: queue.stats.leftToRelay,
          dispatched: (await outbox.stats()).dispatched,
        };
        const { committed, dropped, answeredMs } = await scenario(
          tag,
          txs,
          faults,
        );
        // the fast path holds no caller longer than fastPathTimeoutMs (+ DB round trips)
        expect(Math.max(...answeredMs)).toBeLessThan(1500);
        await waitFor(
          () => allDelivered(committed),
          `${tag}: every committed job run`,
          25_000,
        ).catch(async (error) => {
          throw new Error(
            `${String(error)} (faults ${JSON.stringify(faults)}): ${await diagnose(committed.filter((id) => !runs.get(id)))}`,
          );
        });
        await waitFor(
          async () => (await pendingOf(tag)) === 0,
          `${tag}: outbox rows dispatched`,
          15_000,
        );
        await sleep(800);
        const notOnce = committed.filter((id) => (runs.get(id) ?? 0) > 1);
        expect({
          faults,
          notOnce: notOnce.map((id) => [id, runs.get(id)]),
        }).toEqual({
          faults,
          notOnce: [],
        });
        for (const id of committed) {
          expect([
            id,
            await redis.cli('EXISTS', `bull:${QUEUE}:${id}`),
          ]).toEqual([id, '1']);
        }
        for (const id of dropped) {
          expect([
            id,
            runs.has(id),
            await redis.cli('EXISTS', `bull:${QUEUE}:${id}`),
          ]).toEqual([id, false, '0']);
        }
        const stats = await outbox.stats();
        expect(stats).toMatchObject({ pending: 0, failing: 0, maxAttempts: 0 });
        expect(stats.dispatched - before.dispatched).toBe(committed.length);
        expect(queue.stats.droppedOnRollback - before.dropped).toBe(
          dropped.length,
        );
        expect(queue.stats.deferred - before.deferred).toBe(
          committed.length + dropped.length,
        );
        const relayed = outbox.relayStats.relayed - before.relayed;
        const left = queue.stats.leftToRelay - before.leftToRelay;
        const enqueued = queue.stats.enqueued - before.enqueued;
        // the relay takes only rows the fast path gave up on
        expect({ relayed, left }).toEqual({
          relayed: Math.min(relayed, left),
          left,
        });
        expect(left).toBeLessThanOrEqual(committed.length);
        expect(enqueued + left).toBeGreaterThanOrEqual(committed.length);
      },
    ),
    { numRuns: Number(process.env.A6_RUNS ?? 3), endOnFailure: true },
  );
});
