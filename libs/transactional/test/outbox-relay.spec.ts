import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  TransactionalModuleOptions,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { onMariaDb, uniqueName } from './support/env';
import { LIB_QUEUE } from './support/queue-kind';
import { openDataSource } from './support/db';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  redisStatus,
  waitFor,
} from './support/lib-app';
import {
  createOutboxTable,
  makeOutboxRowsEligible,
} from './support/outbox-table';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';
import { dbQuery } from './support/db';

/** Durable, on the spec's own Redis (paused or killed by the tests). */
const ON_OWN = uniqueName('relay-own');
/** Durable, on the shared Redis. */
const SHARED = uniqueName('relay-shared');
const QUEUES = [ON_OWN, SHARED];
const TABLE = 'tx_spec_outbox_relay';
const REDIS_TIMEOUT_MS = 1_000;
const POLL_INTERVAL_MS = 1_000;
const MAX_BACKOFF_MS = 3_000;

type Payload = { n: number };

type Row = {
  id: string;
  relay_attempts: number;
  last_error: string | null;
  dispatched_at: Date | null;
  /** `available_at - clock_timestamp()` in ms. */
  wait_ms: number;
};

describe('when the outbox relay dispatches rows', () => {
  let ownRedis: OwnRedis;
  let a: INestApplication;
  let b: INestApplication;
  let activity: DataSource;

  const options = (): TransactionalModuleOptions => ({
    outbox: {
      tableName: TABLE,
      markBatchDelayMs: 5,
      relay: {
        enabled: false,
        batchSize: 5,
        redisTimeoutMs: REDIS_TIMEOUT_MS,
        pollIntervalMs: POLL_INTERVAL_MS,
        maxBackoffMs: MAX_BACKOFF_MS,
      },
    },
  });
  const start = () =>
    createLibApp({
      queues: [
        {
          name: ON_OWN,
          durable: true,
          bull: { url: ownRedis.url, redis: { retryStrategy: () => 50 } },
        },
        { name: SHARED, durable: true },
      ],
      options: options(),
      listen: false,
    });
  const outbox = (app: INestApplication) => app.get(TransactionalOutbox);
  const aware = (app: INestApplication, name: string) =>
    app.get<TransactionAwareQueue<Payload>>(
      getTransactionAwareQueueToken(name),
    );
  /** The outbox rows of `ids` in `queue`, by id. */
  const rows = async (queue: string, ids: string[]): Promise<Row[]> =>
    (
      await dbQuery(
        a.get(DataSource),
        `SELECT id, relay_attempts, last_error, dispatched_at,
                extract(epoch FROM available_at - clock_timestamp()) * 1000 AS wait_ms
           FROM ${TABLE} WHERE queue = $1 AND id = ANY($2::text[]) ORDER BY id`,
        [queue, ids],
      )
    ).map((row: Row) => ({ ...row, wait_ms: Number(row.wait_ms) }));
  /** Makes every pending row eligible now (as if the grace period or backoff had passed). */
  const makeEligible = () => makeOutboxRowsEligible(a.get(DataSource), TABLE);
  /**
   * Adds `count` durable jobs in one transaction of `a` whose fast path fails (as in a Redis
   * outage), so that their rows stay pending; resolves with their ids.
   */
  async function pendingJobs(queueName: string, count: number) {
    const bull = bullQueue(a, queueName);
    const { add, addBulk } = bull;
    bull.add = bull.addBulk = (async () => {
      throw new Error('simulated Redis outage');
    }) as any;
    try {
      return await a
        .get(TransactionHost)
        .withTransaction(() =>
          aware(a, queueName).addBulk(
            Array.from({ length: count }, (_, n) => ({ data: { n } })),
          ),
        );
    } finally {
      bull.add = add;
      bull.addBulk = addBulk;
    }
  }
  /** Connections to the spec database that sit in an open transaction, doing nothing. */
  const idleInTransaction = async () =>
    await activity.query(
      onMariaDb
        ? // NOTE: MariaDB has no "idle in transaction" state: a sleeping connection with an
          // InnoDB transaction open is one. innodb_trx is a cache, refreshed only when nobody
          // has read it for 100 ms (hence the polling interval below): read more often, it can
          // keep showing a short transaction long over, joined with its connection now asleep
          // in the pool (a CI run saw one connection in every read of the wait;
          // `node scripts/innodb-trx-cache.js` shows it).
          `SELECT p.id AS pid, p.command AS state, p.info AS query
               FROM information_schema.innodb_trx t
               JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id
              WHERE p.db = DATABASE() AND p.command = 'Sleep'`
        : `SELECT pid, state, query FROM pg_stat_activity
              WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
    );

  beforeAll(async () => {
    ownRedis = await startOwnRedis();
    await createOutboxTable(TABLE);
    a = await start();
    b = await start();
    for (const app of [a, b]) {
      for (const name of QUEUES) await bullQueue(app, name).getJobCounts();
    }
    activity = await openDataSource();
  });

  afterAll(async () => {
    ownRedis?.resume();
    await activity?.destroy();
    await closeLibApp(b, []);
    await closeLibApp(a, QUEUES);
    await ownRedis?.stop();
  });

  describe('when Redis stops answering while a relay dispatches', () => {
    it('should hold no transaction open, bound its wait, keep the rows from other relays, and settle them once Redis answers', async () => {
      const ids = await pendingJobs(ON_OWN, 3);
      await makeEligible();
      ownRedis.pause();
      let relaying: Promise<number> | undefined;
      try {
        const startedAt = Date.now();
        relaying = outbox(a).relayOnce();
        relaying.catch(() => undefined);
        // NOTE: on MySQL/MariaDB the claim itself is a short transaction of several statements,
        // asleep between them while Node runs; on a loaded machine a sample could catch it.
        // What must not stay open is a transaction across the wait for Redis, after the claim.
        await waitFor(
          async () => (await rows(ON_OWN, ids)).every((row) => row.wait_ms > 0),
          'the claim of the rows to commit',
          REDIS_TIMEOUT_MS - 400,
        );
        const seen: unknown[] = [];
        while (Date.now() - startedAt < REDIS_TIMEOUT_MS - 200) {
          seen.push(...(await idleInTransaction()));
          await new Promise((resolve) =>
            setTimeout(resolve, onMariaDb ? 150 : 50),
          );
        }
        // Another relay (another process) finds nothing to claim.
        const other = await outbox(b).relayOnce();

        expect(seen).toEqual([]);
        expect(other).toBe(0);
        await expect(relaying).rejects.toThrow(
          `Redis did not answer within ${REDIS_TIMEOUT_MS} ms`,
        );
        expect(Date.now() - startedAt).toBeLessThan(REDIS_TIMEOUT_MS + 1_000);
        // Bull: the wait that timed out was the check for job husks, before any job was handed
        // over: the attempt is recorded at once and the rows back off. BullMQ (no husks): it was
        // the hand-over itself, which may still land: the rows stay leased to this relay, to be
        // settled when Redis answers (recorded then, or marked). Either way no other relay
        // takes them now.
        expect(await rows(ON_OWN, ids)).toEqual(
          ids.sort().map((id) => ({
            id,
            ...(LIB_QUEUE === 'bull'
              ? {
                  relay_attempts: 1,
                  last_error: expect.stringContaining(
                    `Redis did not answer within ${REDIS_TIMEOUT_MS} ms`,
                  ),
                }
              : { relay_attempts: 0, last_error: null }),
            dispatched_at: null,
            wait_ms: expect.any(Number),
          })),
        );
        for (const row of await rows(ON_OWN, ids))
          expect(row.wait_ms).toBeGreaterThan(0);
      } finally {
        ownRedis.resume();
        await relaying?.catch(() => undefined);
      }

      const bull = bullQueue<Payload>(a, ON_OWN);
      if (LIB_QUEUE === 'bull') {
        await makeEligible();
        expect(await outbox(a).relayOnce()).toBe(3);
      } else {
        // The hand-over Redis ran once it was resumed is settled: the rows are marked.
        await waitFor(
          async () =>
            (await rows(ON_OWN, ids)).every((row) => row.dispatched_at),
          'the late hand-over to be settled',
        );
      }
      for (const id of ids) expect((await findJob(bull, id))?.id).toBe(id);
      expect((await rows(ON_OWN, ids)).every((row) => row.dispatched_at)).toBe(
        true,
      );
    });
  });

  describe('when several relays (several processes) poll the same rows at once', () => {
    it('should hand each row to Bull exactly once', async () => {
      const ids = await pendingJobs(SHARED, 40);
      await makeEligible();
      const handed: string[] = [];
      for (const app of [a, b]) {
        const bull = bullQueue(app, SHARED);
        const addBulk = bull.addBulk.bind(bull);
        jest.spyOn(bull, 'addBulk').mockImplementation((jobs) => {
          handed.push(...jobs.map((job) => String(job.opts?.jobId)));
          return addBulk(jobs);
        });
      }

      const drain = async (app: INestApplication) => {
        while ((await outbox(app).relayOnce()) > 0);
      };
      await Promise.all([drain(a), drain(b), drain(a), drain(b)]);

      expect(handed.sort()).toEqual([...ids].sort());
      expect(await bullQueue(a, SHARED).getWaitingCount()).toBe(40);
      expect((await rows(SHARED, ids)).every((row) => row.dispatched_at)).toBe(
        true,
      );
    });
  });

  describe('when relay attempts fail', () => {
    it('should count them, keep the last error, back off per row (exponential, capped) and show it in stats()', async () => {
      const ids = (await pendingJobs(ON_OWN, 2)).sort();
      await ownRedis.kill();
      await waitFor(
        () => redisStatus(bullQueue(a, ON_OWN)) !== 'ready',
        'the Bull client to notice that Redis is gone',
      );
      const waits: number[][] = [];
      for (let attempt = 1; attempt <= 4; attempt++) {
        await makeEligible();
        await expect(outbox(a).relayOnce()).rejects.toThrow(
          'Redis client is not connected',
        );
        // The rows wait out their backoff: a poll now finds nothing.
        expect(await outbox(a).relayOnce()).toBe(0);
        const now = await rows(ON_OWN, ids);
        expect(now.map((row) => row.relay_attempts)).toEqual([
          attempt,
          attempt,
        ]);
        waits.push(now.map((row) => row.wait_ms));
      }

      // pollIntervalMs × 2^(attempts − 1), at most maxBackoffMs.
      const expected = [1_000, 2_000, 3_000, 3_000];
      waits.forEach((pair, i) => {
        for (const wait of pair) {
          expect(wait).toBeLessThanOrEqual(expected[i]);
          expect(wait).toBeGreaterThan(expected[i] - 500);
        }
      });
      const stats = await outbox(a).stats();
      expect(stats).toMatchObject({
        pending: 2,
        failing: 2,
        maxAttempts: 4,
        lastError: {
          queue: ON_OWN,
          id: expect.any(String),
          attempts: 4,
          message: expect.stringContaining('Redis client is not connected'),
        },
      });
      expect(ids).toContain(stats.lastError?.id);

      await ownRedis.restart();
      await waitFor(
        () => redisStatus(bullQueue(a, ON_OWN)) === 'ready',
        'the Bull client to reconnect',
      );
      await makeEligible();
      expect(await outbox(a).relayOnce()).toBe(2);
      expect(await outbox(a).stats()).toMatchObject({
        pending: 0,
        failing: 0,
        maxAttempts: 0,
        lastError: null,
      });
      const bull: Queue<Payload> = bullQueue(a, ON_OWN);
      for (const id of ids) expect((await findJob(bull, id))?.id).toBe(id);
    });
  });
});
