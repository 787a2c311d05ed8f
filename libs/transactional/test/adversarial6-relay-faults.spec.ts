/**
 * adversarial6: the outbox relay under REAL Redis faults (own redis-server, AOF with
 * `appendfsync always`, so a kill and restart on the same port loses nothing Redis answered):
 * SIGSTOP/SIGCONT, SIGKILL + restart, `CLIENT PAUSE ... ALL` / `WRITE`, `DEBUG SLEEP`, memory
 * full (`maxmemory` + noeviction). Relay-only mode (`graceMs` 0: README "with 0 every durable job
 * is relayed"), jobs `removeOnComplete`, so a second hand-over of a job would make it run again.
 *
 * README promise checked: every job of a committed transaction reaches Redis and runs exactly
 * once while every fault is far shorter than the relay lease (`leaseMs`: "only a reply later than
 * the whole lease lets the next relay enqueue the job again"); a job of a rolled-back transaction
 * never runs; no unhandled rejection / uncaught exception; outbox and relay stats agree.
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

const QUEUE = uniqueName('a6-relay');
const TABLE = `a6_relay_outbox_${process.pid}`;
const LEASE_MS = 6000;
const REDIS_TIMEOUT_MS = 300;

const failures = watchProcessFailures();
let redis: PersistentRedis;
let app: INestApplication;
let host: TransactionHost;
let outbox: TransactionalOutbox;
let queue: TransactionAwareQueue<any>;
/** Runs of each job id by the consumer (a separate Bull queue / BullMQ worker). */
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
        relay: {
          graceMs: 0,
          leaseMs: LEASE_MS,
          redisTimeoutMs: REDIS_TIMEOUT_MS,
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

/** Runs transactions and faults at once; resolves with the ids of committed and dropped jobs. */
async function scenario(tag: string, txs: TxSpec[], faults: FaultSpec[]) {
  const committed: string[] = [];
  const dropped: string[] = [];
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
      try {
        await host.withTransaction(async () => {
          await host.getRepository(Order).insert({ label: `${tag}-${i}` });
          for (let j = 0; j < t.jobs; j++) {
            ids.push(
              await queue.add(
                'work',
                { tag, i, j },
                { removeOnComplete: true, jobId: `${tag}-${i}-${j}` },
              ),
            );
          }
          if (!t.commit) throw new Error('rollback on purpose');
        });
        committed.push(...ids);
      } catch (error) {
        if (t.commit) throw error;
        dropped.push(...ids);
      }
    }),
  );
  await Promise.all([faultLane, txLane]);
  return { committed, dropped };
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

/** Where the jobs `ids` are: their Redis hash, their outbox row, the relay's counters. */
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
  const lists = await Promise.all(
    ['wait', 'active', 'completed', 'failed', 'delayed'].map(
      async (l) =>
        `${l}=${await redis.cli(l === 'completed' || l === 'failed' || l === 'delayed' ? 'ZCARD' : 'LLEN', `bull:${QUEUE}:${l}`).catch(() => '?')}`,
    ),
  );
  return `${out.join('\n')}\nlists ${lists.join(' ')} relay=${JSON.stringify(outbox.relayStats)} consumerErrors=${consumerErrors.length} ${String(consumerErrors[consumerErrors.length - 1])}`;
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
  // every fault far shorter than the lease (6 s), most longer than redisTimeoutMs (300 ms)
  ms: fc.integer({ min: 150, max: 1200 }),
});
const txArb = fc.record({
  startMs: fc.integer({ min: 0, max: 1500 }),
  jobs: fc.integer({ min: 1, max: 3 }),
  commit: fc.boolean(),
});

it('random Redis faults shorter than the lease while transactions commit durable jobs: each committed job reaches Redis and never runs twice, no rolled-back job ever, stats agree', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(txArb, { minLength: 4, maxLength: 12 }),
      fc.array(faultArb, { minLength: 1, maxLength: 3 }),
      async (txs, faults) => {
        const tag = `r${run++}-${Date.now().toString(36)}`;
        const before = {
          relayed: outbox.relayStats.relayed,
          dropped: queue.stats.droppedOnRollback,
          deferred: queue.stats.deferred,
          dispatched: (await outbox.stats()).dispatched,
        };
        const { committed, dropped } = await scenario(tag, txs, faults);
        await waitFor(
          () => allDelivered(committed),
          `${tag}: every committed job run`,
          25_000,
        ).catch(async (error) => {
          throw new Error(
            `${String(error)}: ${await diagnose(committed.filter((id) => !runs.get(id)))}`,
          );
        });
        await waitFor(
          async () => (await pendingOf(tag)) === 0,
          `${tag}: outbox rows dispatched`,
          15_000,
        );
        // time for a late or second hand-over to show up as a second run
        await sleep(800);
        const twice = committed.filter((id) => (runs.get(id) ?? 0) > 1);
        expect({
          faults,
          twice: twice.map((id) => [id, runs.get(id)]),
        }).toEqual({
          faults,
          twice: [],
        });
        expect(dropped.filter((id) => runs.has(id))).toEqual([]);
        const stats = await outbox.stats();
        expect(stats).toMatchObject({ pending: 0, failing: 0, maxAttempts: 0 });
        expect(stats.dispatched - before.dispatched).toBe(committed.length);
        expect(queue.stats.droppedOnRollback - before.dropped).toBe(
          dropped.length,
        );
        expect(queue.stats.deferred - before.deferred).toBe(
          committed.length + dropped.length,
        );
        // relay-only, every fault inside the lease: each row is handed over (and counted) once
        expect(outbox.relayStats.relayed - before.relayed).toBe(
          committed.length,
        );
      },
    ),
    { numRuns: Number(process.env.A6_RUNS ?? 3), endOnFailure: true },
  );
});

it('memory full (maxmemory, noeviction): rows stay pending with the OOM error in stats(), nothing runs; once memory is freed every committed job runs once', async () => {
  const tag = `oom-${Date.now().toString(36)}`;
  const info = await redis.cli('INFO', 'memory');
  const used = Number(/used_memory:(\d+)/.exec(info)![1]);
  await redis.cli('CONFIG', 'SET', 'maxmemory', String(used + 64 * 1024));
  await redis.cli('SETRANGE', 'adv6-filler', String(512 * 1024), 'x');
  let result: { committed: string[]; dropped: string[] };
  try {
    result = await scenario(
      tag,
      Array.from({ length: 8 }, (_, i) => ({
        startMs: 0,
        jobs: 2,
        commit: i % 3 !== 2,
      })),
      [],
    );
    await waitFor(
      async () => (await outbox.stats()).failing >= result.committed.length,
      'relay attempts recorded',
      10_000,
    );
    const stats = await outbox.stats();
    expect(stats.pending).toBe(result.committed.length);
    expect(stats.lastError?.message).toMatch(/OOM|maxmemory|EXECABORT/i);
    expect(result.committed.filter((id) => runs.has(id))).toEqual([]);
  } finally {
    await redis.cli('DEL', 'adv6-filler');
    await redis.cli('CONFIG', 'SET', 'maxmemory', '0');
  }
  await waitFor(
    () => result.committed.every((id) => runs.get(id) === 1),
    'every committed job run after memory is freed',
    20_000,
  );
  await waitFor(async () => (await pendingOf(tag)) === 0, 'drained', 10_000);
  await sleep(500);
  expect(result.committed.filter((id) => runs.get(id) !== 1)).toEqual([]);
  expect(result.dropped.filter((id) => runs.has(id))).toEqual([]);
  expect(await outbox.stats()).toMatchObject({ pending: 0, failing: 0 });
});

it('a storm of dropped connections (CLIENT KILL every few ms for 3 s) while 40 transactions commit: each committed job reaches Redis and never runs twice', async () => {
  const tag = `ck-${Date.now().toString(36)}`;
  const before = { relayed: outbox.relayStats.relayed };
  const connections = async () =>
    Number(
      /total_connections_received:(\d+)/.exec(
        await redis.cli('INFO', 'stats'),
      )![1],
    );
  const connectionsBefore = await connections();
  const txs = Array.from({ length: 40 }, (_, i) => ({
    startMs: i * 70,
    jobs: 1 + (i % 3),
    commit: i % 5 !== 4,
  }));
  const { committed, dropped } = await scenario(tag, txs, [
    { kind: 'client-kill', atMs: 0, ms: 3000 },
  ]);
  await waitFor(
    () => allDelivered(committed),
    `${tag}: every committed job run`,
    25_000,
  ).catch(async (error) => {
    throw new Error(
      `${String(error)}: ${await diagnose(committed.filter((id) => !runs.get(id)))}`,
    );
  });
  await waitFor(async () => (await pendingOf(tag)) === 0, 'drained', 15_000);
  await sleep(800);
  expect(
    committed
      .filter((id) => (runs.get(id) ?? 0) > 1)
      .map((id) => [id, runs.get(id)]),
  ).toEqual([]);
  expect(await allDelivered(committed)).toBe(true);
  expect(dropped.filter((id) => runs.has(id))).toEqual([]);
  expect(outbox.relayStats.relayed - before.relayed).toBe(committed.length);
  // the storm did drop the clients, which connected again (else this case proves nothing); whether
  // a relay poll was among the calls it broke depends on timing, so it is not asserted
  expect((await connections()) - connectionsBefore).toBeGreaterThan(10);
});
