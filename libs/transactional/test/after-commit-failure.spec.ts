import {
  Controller,
  INestApplication,
  Injectable,
  Param,
  Post,
} from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  getTransactionAwareQueueToken,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import {
  ProcessFailures,
  nextMacrotask,
  watchProcessFailures,
} from './support/process-failures';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';

const TIMEOUT_MS = 1_000;

/** On the shared Redis. */
const HEALTHY = uniqueName('acf-healthy');
/** On the spec's own Redis; the client refuses commands while disconnected. */
const FAILS_FAST = uniqueName('acf-fails-fast');
/** On the spec's own Redis; the client would queue commands until Redis is back (as Bull's defaults do, for minutes). */
const WAITS = uniqueName('acf-waits');
/**
 * On a second Redis of the spec's own, paused during its request: the client (connected, so
 * it sends the command) gives the command up after its 2 s commandTimeout, well after the
 * timeout.
 */
const FAILS_LATE = uniqueName('acf-fails-late');
const ON_OWN_REDIS = [FAILS_FAST, WAITS];
const QUEUES = [HEALTHY, ...ON_OWN_REDIS, FAILS_LATE];

/** Reconnect quickly, so that the spec does not wait for Bull's exponential back-off. */
const retryStrategy = () => 50;
const OWN_REDIS_OPTIONS: Record<string, object> = {
  [FAILS_FAST]: { enableOfflineQueue: false, retryStrategy },
  [WAITS]: { maxRetriesPerRequest: null, retryStrategy },
  [FAILS_LATE]: { commandTimeout: 2 * TIMEOUT_MS, retryStrategy },
};

type OrderJob = { orderId: string };

/** After-commit hooks that ran, in order. */
const ran: string[] = [];

/** Registers the hooks `plan` names, around one job added to `queue`, in plan order. */
async function writeAndPlan(
  host: TransactionHost,
  queue: TransactionAwareQueue<OrderJob>,
  plan: string[],
) {
  const order = await host.getRepository(Order).save({ label: queue.name });
  let jobId = '';
  for (const step of plan) {
    if (step === 'job') jobId = await queue.add({ orderId: order.id });
    else if (step === 'throws') {
      await host.afterCommit(() => {
        ran.push(step);
        throw new Error('CRM unreachable');
      }, 'notify the CRM');
    } else if (step === 'rejects') {
      await host.afterCommit(async () => {
        ran.push(step);
        throw new Error('cache flush refused');
      }, 'flush the cache');
    } else if (step === 'hangs') {
      await host.afterCommit(() => {
        ran.push(step);
        return new Promise(() => undefined);
      }, 'wait forever');
    } else {
      await host.afterCommit(() => ran.push(step));
    }
  }
  return { id: order.id, jobId };
}

@Injectable()
class QueueByName {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue(HEALTHY)
    readonly healthy: TransactionAwareQueue<OrderJob>,
    @InjectTransactionAwareQueue(FAILS_FAST)
    readonly failsFast: TransactionAwareQueue<OrderJob>,
    @InjectTransactionAwareQueue(WAITS)
    readonly waits: TransactionAwareQueue<OrderJob>,
    @InjectTransactionAwareQueue(FAILS_LATE)
    readonly failsLate: TransactionAwareQueue<OrderJob>,
  ) {}

  get(name: string): TransactionAwareQueue<OrderJob> {
    const byName = [this.healthy, this.failsFast, this.waits, this.failsLate];
    return byName.find((queue) => queue.name === name)!;
  }

  /** The same work as the controller's, from a provider method (no HTTP). */
  @Transactional()
  write(name: string, plan: string[]) {
    return writeAndPlan(this.host, this.get(name), plan);
  }
}

@Controller('orders')
class OrdersController {
  constructor(private readonly queues: QueueByName) {}

  /** Writes a row and registers hooks around a job, as `:plan` says (e.g. `first,job,throws`). */
  @Post(':queue/:plan')
  @Transactional()
  create(@Param('queue') name: string, @Param('plan') plan: string) {
    return writeAndPlan(
      this.queues.host,
      this.queues.get(name),
      plan.split(','),
    );
  }
}

/** The client status a QueueUnavailableError log line names. */
function statusIn(line: string | undefined): string {
  return /\(status "(\w+)"\)/.exec(line ?? '')?.[1] ?? '';
}

describe('when after-commit work fails', () => {
  let app: INestApplication;
  let ownRedis: OwnRedis;
  let lateRedis: OwnRedis;
  let failures: ProcessFailures;
  const logger = new CapturingLogger();
  let runner: TransactionRunner;

  beforeAll(async () => {
    ownRedis = await startOwnRedis();
    lateRedis = await startOwnRedis();
    app = await createLibApp({
      controllers: [OrdersController],
      providers: [QueueByName],
      queues: [
        { name: HEALTHY },
        ...ON_OWN_REDIS.map((name) => ({
          name,
          bull: { url: ownRedis.url, redis: OWN_REDIS_OPTIONS[name] },
        })),
        {
          name: FAILS_LATE,
          bull: { url: lateRedis.url, redis: OWN_REDIS_OPTIONS[FAILS_LATE] },
        },
      ],
      options: { afterCommitTimeoutMs: TIMEOUT_MS },
      logger,
    });
    runner = app.get(TransactionRunner);
    failures = watchProcessFailures();
    // Bull connects lazily: make every client connect before Redis goes away.
    for (const name of QUEUES) await bull(name).getJobCounts();
  });

  afterAll(async () => {
    failures?.dispose();
    await closeLibApp(app, QUEUES);
    await ownRedis?.kill();
    await lateRedis?.kill();
  });

  beforeEach(() => {
    logger.clear();
    ran.length = 0;
  });

  const bull = (name: string): Queue<OrderJob> => bullQueue(app, name);
  const aware = (name: string): TransactionAwareQueue<OrderJob> =>
    app.get(getTransactionAwareQueueToken(name));
  const committed = (id: string) =>
    app.get(DataSource).getRepository(Order).existsBy({ id });
  const errorLines = () =>
    logger.lines('error', 'Transactional').map((line) => line.message);

  /** Posts and measures how long the response took. */
  async function post(name: string, plan: string[]) {
    const startedAt = Date.now();
    const res = await request(await app.getUrl()).post(
      `/orders/${name}/${plan.join(',')}`,
    );
    return { res, elapsed: Date.now() - startedAt };
  }

  async function expectNoProcessFailures() {
    await nextMacrotask();
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  }

  describe('when an afterCommit hook throws or rejects', () => {
    it('should still answer 201, enqueue the job, run the later hooks, and log and count each failure', async () => {
      const before = runner.stats.hookFailures;

      const { res } = await post(HEALTHY, [
        'first',
        'throws',
        'job',
        'rejects',
        'last',
      ]);

      expect(res.status).toBe(201);
      expect(await committed(res.body.id)).toBe(true);
      expect(await inRedis(bull(HEALTHY), res.body.jobId)).toBe(true);
      expect(ran).toEqual(['first', 'throws', 'rejects', 'last']);
      expect(runner.stats.hookFailures).toBe(before + 2);
      expect(errorLines()).toEqual([
        'after-commit step failed: notify the CRM: Error: CRM unreachable',
        'after-commit step failed: flush the cache: Error: cache flush refused',
      ]);
      await expectNoProcessFailures();
    });

    it('should resolve a @Transactional provider method with its value all the same', async () => {
      const before = runner.stats.hookFailures;

      const result = await app
        .get(QueueByName)
        .write(HEALTHY, ['throws', 'job', 'last']);

      expect(result).toEqual({
        id: expect.any(String),
        jobId: expect.any(String),
      });
      expect(await committed(result.id)).toBe(true);
      expect(await inRedis(bull(HEALTHY), result.jobId)).toBe(true);
      expect(ran).toEqual(['throws', 'last']);
      expect(runner.stats.hookFailures).toBe(before + 1);
      await expectNoProcessFailures();
    });

    it('should not hold the response longer than afterCommitTimeoutMs for a hook that never settles, and run the later steps after it', async () => {
      const before = runner.stats.hookFailures;
      const detached = runner.stats.hookPhasesDetached;

      const { res, elapsed } = await post(HEALTHY, ['hangs', 'job', 'last']);

      expect(res.status).toBe(201);
      expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(elapsed).toBeLessThan(TIMEOUT_MS + 2_000);
      // One deadline for the whole phase: the steps after the hung one go on in the background.
      await waitFor(() => ran.includes('last'), 'the step after the hung one');
      expect(await inRedis(bull(HEALTHY), res.body.jobId)).toBe(true);
      expect(ran).toEqual(['hangs', 'last']);
      expect(runner.stats.hookPhasesDetached).toBe(detached + 1);
      expect(runner.stats.hookFailures).toBe(before + 1);
      expect(errorLines()).toEqual([
        `after-commit step failed: wait forever: Error: timed out after ${TIMEOUT_MS} ms`,
      ]);
    });

    it('should time out a lone hook that never settles as a step and as a phase, once, and keep it counted for drain (bounded by its timeout)', async () => {
      const before = runner.stats.hookFailures;
      const detached = runner.stats.hookPhasesDetached;

      const { res, elapsed } = await post(HEALTHY, ['hangs']);

      expect(res.status).toBe(201);
      expect(await committed(res.body.id)).toBe(true);
      expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(elapsed).toBeLessThan(TIMEOUT_MS + 2_000);
      expect(ran).toEqual(['hangs']);
      expect(runner.stats.hookPhasesDetached).toBe(detached + 1);
      expect(runner.stats.hookFailures).toBe(before + 1);
      expect(errorLines()).toEqual([
        `after-commit step failed: wait forever: Error: timed out after ${TIMEOUT_MS} ms`,
      ]);
      expect(
        logger
          .lines('warn', 'Transactional')
          .map((line) => line.message)
          .filter((message) => message.includes('still running')),
      ).toHaveLength(1);
      // The timed-out step goes on in the background, so it is still work in progress: a shutdown
      // waits for it (at most its drain timeout) rather than closing the queues under it. This
      // spec's hung hooks never settle, so drain gives up after 100 ms with them still counted.
      expect(await runner.drain(100)).toBeGreaterThanOrEqual(1);
      await expectNoProcessFailures();
    });
  });

  describe("when the Bull queue's Redis is unreachable at flush time", () => {
    /** The jobs whose enqueue was refused (never sent). */
    const lostJobIds: string[] = [];

    beforeAll(async () => {
      await ownRedis.kill('SIGKILL');
      await waitFor(
        () =>
          ON_OWN_REDIS.every((name) => bull(name).client.status !== 'ready'),
        'the Bull clients to notice that Redis is gone',
      );
    });

    it('should answer 201 at once, keep the row, run the later hooks, and log the refused enqueue with the queue name and job id (client fails fast)', async () => {
      const before = runner.stats.hookFailures;

      const { res, elapsed } = await post(FAILS_FAST, ['job', 'last']);

      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        id: expect.any(String),
        jobId: expect.any(String),
      });
      expect(elapsed).toBeLessThan(TIMEOUT_MS);
      expect(await committed(res.body.id)).toBe(true);
      expect(ran).toEqual(['last']);
      expect(errorLines()).toEqual([
        `after-commit step failed: enqueue 1 job(s) to queue "${FAILS_FAST}" ` +
          `(job ids ${res.body.jobId}): QueueUnavailableError: Queue "${FAILS_FAST}": its ` +
          `Redis client is not connected (status "${statusIn(errorLines()[0])}"); the enqueue ` +
          `was refused at once instead of waiting in the client's offline queue. Use durable ` +
          `mode for jobs that must survive a Redis outage.`,
      ]);
      expect(aware(FAILS_FAST).stats).toEqual({
        deferred: 1,
        droppedOnRollback: 0,
        enqueued: 0,
        failed: 1,
        leftToRelay: 0,
        lateMarked: 0,
      });
      expect(runner.stats.hookFailures).toBe(before + 1);
      await expectNoProcessFailures();
      lostJobIds.push(res.body.jobId);
    });

    it("should answer 201 at once and leave nothing in the client's offline queue (client would wait for Redis)", async () => {
      const before = runner.stats.hookFailures;

      const { res, elapsed } = await post(WAITS, ['job', 'last']);

      expect(res.status).toBe(201);
      expect(elapsed).toBeLessThan(TIMEOUT_MS);
      expect(await committed(res.body.id)).toBe(true);
      expect(ran).toEqual(['last']);
      expect(errorLines()).toEqual([
        expect.stringMatching(
          new RegExp(
            `^after-commit step failed: enqueue 1 job\\(s\\) to queue "${WAITS}" \\(job ids ` +
              `${res.body.jobId}\\): QueueUnavailableError: Queue "${WAITS}": its Redis ` +
              `client is not connected`,
          ),
        ),
      ]);
      expect(
        (bull(WAITS).client as unknown as { offlineQueue: unknown[] })
          .offlineQueue.length,
      ).toBe(0);
      expect(aware(WAITS).stats).toEqual({
        deferred: 1,
        droppedOnRollback: 0,
        enqueued: 0,
        failed: 1,
        leftToRelay: 0,
        lateMarked: 0,
      });
      expect(runner.stats.hookFailures).toBe(before + 1);
      await expectNoProcessFailures();
      lostJobIds.push(res.body.jobId);
    });

    it('should not raise an unhandled rejection when the enqueue fails after its timeout', async () => {
      // NOTE: paused, the server keeps the connection: the client is ready and sends the
      // command, which the client gives up after its commandTimeout, well after the timeout.
      lateRedis.pause();
      const { res, elapsed } = await post(FAILS_LATE, ['job']);

      expect(res.status).toBe(201);
      expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(await committed(res.body.id)).toBe(true);
      await waitFor(
        () => aware(FAILS_LATE).stats.failed === 1,
        'the late enqueue failure',
      );
      await lateRedis.kill('SIGKILL');
      expect(aware(FAILS_LATE).stats).toEqual({
        deferred: 1,
        droppedOnRollback: 0,
        enqueued: 0,
        failed: 1,
        leftToRelay: 0,
        lateMarked: 0,
      });
      expect(errorLines()).toEqual([
        `after-commit step failed: enqueue 1 job(s) to queue "${FAILS_LATE}" ` +
          `(job ids ${res.body.jobId}): Error: timed out after ${TIMEOUT_MS} ms`,
      ]);
      await expectNoProcessFailures();
      // NOTE: not lost for sure: the server may have run the command as it died, or ioredis may
      // resend it after reconnecting (a timed-out step is not cancelled).
    });

    describe('when Redis comes back', () => {
      beforeAll(async () => {
        await ownRedis.restart();
        await lateRedis.restart();
        await waitFor(
          () =>
            [...ON_OWN_REDIS, FAILS_LATE].every(
              (name) => bull(name).client.status === 'ready',
            ),
          'the Bull clients to reconnect',
        );
      });

      it('should not enqueue the jobs whose enqueue was refused (without the outbox they are logged, not retried)', async () => {
        expect(lostJobIds).toHaveLength(2);
        expect(await inRedis(bull(FAILS_FAST), lostJobIds[0])).toBe(false);
        expect(await inRedis(bull(WAITS), lostJobIds[1])).toBe(false);
        expect(await bull(FAILS_FAST).getJobCounts()).toEqual(NO_JOBS);
        expect(await bull(WAITS).getJobCounts()).toEqual(NO_JOBS);
        await expectNoProcessFailures();
      });
    });
  });
});
