import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionalOutbox,
  TransactionAwareQueue,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
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

/** Durable, on the spec's own Redis. */
const DURABLE = uniqueName('fast-durable');
/** Not durable, on the spec's own Redis; its client would queue commands for as long as Redis is away. */
const PLAIN = uniqueName('fast-plain');
const QUEUES = [DURABLE, PLAIN];
const TABLE = 'tx_spec_outbox_fast_path';
const AFTER_COMMIT_TIMEOUT_MS = 5_000;
const FAST_PATH_TIMEOUT_MS = 300;
/** Rows become eligible for the relay this long after the commit (the relay does not run). */
const GRACE_MS = 2_000;

type Payload = { n: number };

@Injectable()
class Jobs {
  constructor(
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<Payload>,
    @InjectTransactionAwareQueue(PLAIN)
    readonly plain: TransactionAwareQueue<Payload>,
  ) {}

  /** Adds one job to `queue` in a transaction; resolves with its id once the request would return. */
  @Transactional()
  add(queue: TransactionAwareQueue<Payload>, n: number) {
    return queue.add({ n });
  }
}

describe('when Redis is unavailable after a commit', () => {
  let app: INestApplication;
  let ownRedis: OwnRedis;
  let jobs: Jobs;
  let outbox: TransactionalOutbox;
  const logger = new CapturingLogger();
  const bull = (name: string): Queue<Payload> => bullQueue(app, name);
  /** Commands waiting in the ioredis client of `name` for a connection. */
  const offlineQueue = (name: string): number =>
    (bull(name).client as unknown as { offlineQueue: { length: number } })
      .offlineQueue.length;
  const row = async (id: string) =>
    (
      await dbQuery(
        app.get(DataSource),
        `SELECT dispatched_at FROM ${TABLE} WHERE id = $1`,
        [id],
      )
    )[0] as { dispatched_at: Date | null } | undefined;
  const makeEligible = () => makeOutboxRowsEligible(app.get(DataSource), TABLE);
  /** Runs a transaction that adds one job to `queue`; resolves with its id and how long it took. */
  async function request(queue: TransactionAwareQueue<Payload>) {
    const startedAt = Date.now();
    const id = await jobs.add(queue, 1);
    return { id, elapsed: Date.now() - startedAt };
  }
  const errorLines = () =>
    logger.lines('error', 'Transactional').map((line) => line.message);

  beforeAll(async () => {
    ownRedis = await startOwnRedis();
    await createOutboxTable(TABLE);
    const redis = { retryStrategy: () => 50, maxRetriesPerRequest: null };
    app = await createLibApp({
      providers: [Jobs],
      queues: [
        { name: DURABLE, durable: true, bull: { url: ownRedis.url, redis } },
        { name: PLAIN, bull: { url: ownRedis.url, redis } },
      ],
      options: {
        afterCommitTimeoutMs: AFTER_COMMIT_TIMEOUT_MS,
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 5,
          fastPathTimeoutMs: FAST_PATH_TIMEOUT_MS,
          relay: { enabled: false, graceMs: GRACE_MS },
        },
      },
      logger,
      listen: false,
    });
    jobs = app.get(Jobs);
    outbox = app.get(TransactionalOutbox);
    for (const name of QUEUES) await bull(name).getJobCounts();
  });

  afterAll(async () => {
    ownRedis?.resume();
    // NOTE: a test that failed while Redis was down: the clients would wait for it forever.
    await ownRedis?.restart().catch(() => undefined);
    await closeLibApp(app, QUEUES);
    await ownRedis?.stop();
  });

  beforeEach(() => logger.clear());

  describe('when Redis is paused (connected, answering nothing)', () => {
    beforeEach(() => bull(DURABLE).empty());

    /** Runs a durable request while Redis is paused, resuming it after `pauseMs`. */
    async function requestWhilePaused(pauseMs: number) {
      ownRedis.pause();
      let resumeTimer: NodeJS.Timeout | undefined;
      try {
        const answered = request(jobs.durable);
        resumeTimer = setTimeout(() => ownRedis.resume(), pauseMs);
        return await answered;
      } catch (error) {
        clearTimeout(resumeTimer);
        ownRedis.resume();
        throw error;
      }
    }

    it('should give a durable job up after fastPathTimeoutMs, and mark its row when the late enqueue lands (no second enqueue by the relay)', async () => {
      const before = { ...jobs.durable.stats };
      const result = await requestWhilePaused(FAST_PATH_TIMEOUT_MS + 200);

      expect(result.elapsed).toBeLessThan(FAST_PATH_TIMEOUT_MS + 700);
      expect(jobs.durable.stats.leftToRelay).toBe(before.leftToRelay + 1);
      expect(errorLines()).toEqual([
        `after-commit step failed: enqueue 1 job(s) to queue "${DURABLE}" (job ids ` +
          `${result.id}): Error: Redis did not take the job(s) within ` +
          `${FAST_PATH_TIMEOUT_MS} ms; the outbox relay will enqueue the durable job(s)`,
      ]);
      // The enqueue in flight lands once Redis answers again, well inside the grace period.
      await waitFor(
        () => jobs.durable.stats.enqueued === before.enqueued + 1,
        'the late enqueue',
      );
      await waitFor(
        async () => (await row(result.id))?.dispatched_at != null,
        'the late enqueue to mark the row',
        GRACE_MS,
      );
      expect(jobs.durable.stats.lateMarked).toBe(before.lateMarked + 1);

      await makeEligible();
      expect(await outbox.relayOnce()).toBe(0);
      expect((await bull(DURABLE).getJob(result.id))?.data).toEqual({ n: 1 });
    });

    it('should mark the row of a late enqueue that lands after the row became eligible too, if no relay took it: the job is in Redis', async () => {
      const before = { ...jobs.durable.stats };
      const result = await requestWhilePaused(GRACE_MS + 500);

      expect(jobs.durable.stats.leftToRelay).toBe(before.leftToRelay + 1);
      await waitFor(
        async () => (await row(result.id))?.dispatched_at != null,
        'the late enqueue to mark the row',
        GRACE_MS + 3_000,
      );
      expect(jobs.durable.stats.lateMarked).toBe(before.lateMarked + 1);
      expect(await outbox.relayOnce()).toBe(0);
      expect((await bull(DURABLE).getJob(result.id))?.data).toEqual({ n: 1 });
      expect(await bull(DURABLE).getWaitingCount()).toBe(1);
    });
  });

  describe('when Redis is down (the client is not connected)', () => {
    beforeAll(async () => {
      await ownRedis.kill();
      await waitFor(
        () => QUEUES.every((name) => bull(name).client.status !== 'ready'),
        'the Bull clients to notice that Redis is gone',
      );
    });

    it('should refuse every flush at once instead of queueing commands in the client, durable or not', async () => {
      const durableBefore = { ...jobs.durable.stats };
      const plainBefore = { ...jobs.plain.stats };
      const durableIds: string[] = [];
      const plainIds: string[] = [];
      for (let i = 0; i < 5; i++) {
        const durable = await request(jobs.durable);
        const plain = await request(jobs.plain);
        expect(durable.elapsed).toBeLessThan(250);
        expect(plain.elapsed).toBeLessThan(250);
        durableIds.push(durable.id);
        plainIds.push(plain.id);
      }

      expect(offlineQueue(DURABLE)).toBe(0);
      expect(offlineQueue(PLAIN)).toBe(0);
      expect(jobs.durable.stats).toEqual({
        ...durableBefore,
        deferred: durableBefore.deferred + 5,
        failed: durableBefore.failed + 5,
        leftToRelay: durableBefore.leftToRelay + 5,
      });
      expect(jobs.plain.stats).toEqual({
        ...plainBefore,
        deferred: plainBefore.deferred + 5,
        failed: plainBefore.failed + 5,
      });
      const refused = (queue: string, id: string, tail = '') =>
        new RegExp(
          `^after-commit step failed: enqueue 1 job\\(s\\) to queue "${queue}" \\(job ids ` +
            `${id}\\): QueueUnavailableError: Queue "${queue}": its Redis client is not ` +
            `connected \\(status "\\w+"\\).*${tail}$`,
        );
      for (const id of plainIds) {
        expect(errorLines()).toContainEqual(
          expect.stringMatching(refused(PLAIN, id)),
        );
      }
      for (const id of durableIds) {
        expect(errorLines()).toContainEqual(
          expect.stringMatching(
            refused(
              DURABLE,
              id,
              '; the outbox relay will enqueue the durable job\\(s\\)',
            ),
          ),
        );
      }
      expect(errorLines()).toHaveLength(10);
      for (const id of durableIds) {
        expect((await row(id))?.dispatched_at).toBeNull();
      }

      await ownRedis.restart();
      await waitFor(
        () => QUEUES.every((name) => bull(name).client.status === 'ready'),
        'the Bull clients to reconnect',
      );
      await makeEligible();
      expect(await outbox.relayOnce()).toBe(5);
      for (const id of durableIds) {
        expect((await bull(DURABLE).getJob(id))?.data).toEqual({ n: 1 });
      }
      // Without the outbox, a job refused during the outage is lost (logged and counted).
      for (const id of plainIds)
        expect(await bull(PLAIN).getJob(id)).toBeNull();
    });
  });
});
