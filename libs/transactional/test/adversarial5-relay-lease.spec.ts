import { getQueueToken } from '@nestjs/bull';
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  processJobs,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/**
 * adversarial5: the relay's lease when Redis is slow to answer. The relay bounds each Redis
 * call by `redisTimeoutMs` (and by its lease), but the command it stops waiting for is not
 * cancelled: Redis may have run it already (only the reply is slow). Its rows must then stay
 * the relay's until its lease ends, and be marked once the reply comes: before, a failed attempt
 * was recorded at once and the row backed off for a poll interval, so that the next poll handed
 * it to Redis again and a job that had run and been removed ran twice. (A reply later than the
 * whole lease is the documented at-least-once bound: the next relay owns the row by then.)
 */
const QUEUE = uniqueName('a5-lease');
const TABLE = `a5_lease_outbox_${process.pid}`;
const LEASE_MS = 3000;
/** The relay stops waiting for Redis after this long, well inside its lease. */
const REDIS_TIMEOUT_MS = 300;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let app: INestApplication;
let host: TransactionHost;
let outbox: TransactionalOutbox;
let queue: TransactionAwareQueue<any>;
let bull: Queue;
const failures = watchProcessFailures();
/** Redis behaviour of the raw queue's add/addBulk, set per test. */
const redis = { refuseNext: 0, replyDelayMs: 0 };
const runs = new Map<string, number>();

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: QUEUE, durable: true }],
    options: {
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        relay: {
          enabled: false,
          graceMs: 0,
          leaseMs: LEASE_MS,
          redisTimeoutMs: REDIS_TIMEOUT_MS,
          pollIntervalMs: 50,
          maxBackoffMs: 100,
        },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  outbox = app.get(TransactionalOutbox);
  queue = app.get(getTransactionAwareQueueToken(QUEUE));
  bull = bullQueue(app, QUEUE);
  // The raw queue (Bull's or BullMQ's): its add/addBulk run in Redis at once; the reply can be
  // made slow, or the call refused (as a Redis error would).
  const raw = app.get(getQueueToken(QUEUE), { strict: false });
  for (const method of ['add', 'addBulk'] as const) {
    const original = raw[method].bind(raw);
    raw[method] = async (...args: unknown[]) => {
      if (redis.refuseNext > 0) {
        redis.refuseNext--;
        throw new Error('simulated Redis error');
      }
      const result = await original(...args);
      if (redis.replyDelayMs > 0) await sleep(redis.replyDelayMs);
      return result;
    };
  }
  processJobs(app, QUEUE, 4, async (job) => {
    runs.set(String(job.id), (runs.get(String(job.id)) ?? 0) + 1);
  });
});

afterAll(async () => {
  redis.replyDelayMs = 0;
  await closeLibApp(app, [QUEUE]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

it('a relay whose Redis reply comes after it stopped waiting, inside its lease: the committed job runs exactly once', async () => {
  // graceMs 0: the fast path leaves every durable row to the relay.
  const id = await host.withTransaction(() =>
    queue.add({ n: 1 }, { removeOnComplete: true }),
  );
  expect(await findJob(bull, id)).toBeNull();
  // Relay A: Redis runs the add at once, but replies after A stopped waiting (REDIS_TIMEOUT_MS)
  // and before A's lease ends.
  redis.replyDelayMs = 1000;
  const claimedAt = Date.now();
  await expect(outbox.relayOnce()).rejects.toThrow(/did not answer/);
  redis.replyDelayMs = 0;
  // The job A handed over exists, runs and is removed.
  await waitFor(() => runs.get(id) === 1, 'the first run');
  // Other polls (relay B) while A's reply is late, and after it: the row is A's, then marked.
  while (Date.now() < claimedAt + LEASE_MS + 500) {
    await expect(outbox.relayOnce()).resolves.toBe(0);
    await sleep(50);
  }
  expect(await outbox.stats()).toMatchObject({ pending: 0, dispatched: 1 });
  expect(await findJob(bull, id)).toBeNull();
  expect(runs.get(id)).toBe(1);
});
