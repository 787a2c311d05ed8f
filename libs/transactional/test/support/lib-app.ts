import {
  BullModule as Bull3Module,
  BullModuleOptions,
  getQueueToken,
} from '@nestjs/bull';
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import {
  INestApplication,
  LoggerService,
  Provider,
  Type,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Job, Queue } from 'bull';
import {
  TransactionAwareQueueOptions,
  TransactionalModule,
  TransactionalModuleOptions,
} from '../../src';
import { Order } from './order.entity';
import {
  poolSizeExtra,
  testDataSourceOptions,
  testDatabaseUrl,
  testRedisUrl,
} from './env';
import { LIB_QUEUE } from './queue-kind';
import { bullmqAsBull, closeFacadeWorkers } from './bullmq-as-bull';

/** One queue of a spec app: made transaction-aware, with optional Bull options of its own. */
export interface LibQueueSpec extends TransactionAwareQueueOptions {
  /** Bull options of this queue only (e.g. `url` of another Redis); merged over the root ones. */
  bull?: Omit<BullModuleOptions, 'name'>;
}

/** What a spec's Nest application is built from. */
export interface LibAppSpec {
  controllers?: Type<unknown>[];
  providers?: Provider[];
  queues: LibQueueSpec[];
  options?: TransactionalModuleOptions;
  entities?: Type<unknown>[];
  poolSize?: number;
  /** Logger of the app (e.g. a `CapturingLogger`). Default: silent unless `TEST_LOGS` is set. */
  logger?: LoggerService;
  /** Database of the app. Default: the shared test database. */
  databaseUrl?: string;
  /** Listen on a free loopback port (default), or only `init()` the app (no HTTP traffic). */
  listen?: boolean;
  /** More modules (e.g. BullMQ flow producers). */
  imports?: any[];
}

/** ioredis options of a Redis URL (`redis://host:port/db`), for BullMQ's `connection`. */
function connectionOf(url: string): Record<string, unknown> {
  const parsed = new URL(url);
  const db = parsed.pathname.slice(1);
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    ...(db ? { db: Number(db) } : {}),
  };
}

/**
 * The queue modules of a spec app for the run's queue library (`LIB_QUEUE`): Bull's, or
 * BullMQ's with each queue's Bull options mapped (`url` and `redis` to `connection`,
 * `defaultJobOptions` as is; the rest is Bull-only).
 */
function queueModules(queues: LibQueueSpec[]) {
  if (LIB_QUEUE === 'bull') {
    return [
      Bull3Module.forRoot({ url: testRedisUrl() }),
      Bull3Module.registerQueue(
        ...queues.map((q) => ({ ...q.bull, name: q.name })),
      ),
    ];
  }
  return [
    BullMQModule.forRoot({ connection: connectionOf(testRedisUrl()) }),
    BullMQModule.registerQueue(
      ...queues.map((q) => ({
        name: q.name,
        ...(q.bull?.url || q.bull?.redis
          ? {
              connection: {
                ...connectionOf(q.bull.url ?? testRedisUrl()),
                ...(q.bull.redis as object),
              },
            }
          : {}),
        ...(q.bull?.defaultJobOptions
          ? { defaultJobOptions: q.bull.defaultJobOptions as object }
          : {}),
      })),
    ),
  ];
}

/**
 * Boots (and listens on a free loopback port) a Nest app with TypeORM (real Postgres, or MariaDB
 * with `LIB_DB=mariadb`), Bull or BullMQ (real Redis, `LIB_QUEUE`) and the library.
 */
export async function createLibApp(
  spec: LibAppSpec,
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        ...testDataSourceOptions(),
        url: spec.databaseUrl ?? testDatabaseUrl(),
        entities: [Order, ...(spec.entities ?? [])],
        synchronize: true,
        extra: poolSizeExtra(spec.poolSize ?? 20),
      }),
      ...queueModules(spec.queues),
      TransactionalModule.forRoot(spec.options ?? {}),
      TransactionalModule.registerQueue(
        ...spec.queues.map(({ bull: _bull, ...options }) => options),
      ),
      ...(spec.imports ?? []),
    ],
    controllers: spec.controllers ?? [],
    providers: spec.providers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({
    logger: spec.logger ?? (process.env.TEST_LOGS ? undefined : false),
  });
  try {
    if (spec.listen === false) await app.init();
    else await app.listen(0, '127.0.0.1');
  } catch (error) {
    // NOTE: an app that failed to start still holds its connections (a spec expecting it).
    await app.close().catch(() => undefined);
    throw error;
  }
  return app;
}

/**
 * The plain queue registered under `name`: Bull's, or BullMQ's (typed as Bull's: the specs use
 * what both have, `add`, `addBulk`, `getJob`, `getWaitingCount`, `obliterate`; see `jobCounts`,
 * `processJobs` and `redisStatus` for the rest).
 */
export function bullQueue<T = any>(
  app: INestApplication,
  name: string,
): Queue<T> {
  const queue = app.get(getQueueToken(name), { strict: false });
  return LIB_QUEUE === 'bull' ? queue : bullmqAsBull<T>(queue);
}

/** Whether Redis holds a job with this id in the Bull (or BullMQ) queue. */
export async function inRedis(queue: Queue, jobId: string): Promise<boolean> {
  return (await findJob(queue, jobId)) !== null;
}

/** The job with this id, or `null` (BullMQ answers `undefined` where Bull answers `null`). */
export async function findJob<T = any>(
  queue: Queue<T>,
  jobId: string,
): Promise<Job<T> | null> {
  return (await queue.getJob(jobId)) ?? null;
}

/**
 * A queue's job counts by state, alike for Bull and BullMQ (through `bullQueue`'s facade:
 * BullMQ's prioritized and waiting-children jobs count as waiting).
 */
export async function jobCounts(queue: Queue): Promise<typeof NO_JOBS> {
  return (await queue.getJobCounts()) as any;
}

/**
 * Processes the jobs of queue `name` with `handler`, `concurrency` at a time: Bull's
 * `queue.process`, or a BullMQ `Worker` on the queue's connection (closed by `closeLibApp`).
 */
export function processJobs<T = any>(
  app: INestApplication,
  name: string,
  concurrency: number,
  handler: (job: Job<T>) => Promise<unknown>,
): void {
  void bullQueue<T>(app, name).process(concurrency, handler);
}

/** The status of the queue's ioredis client (`'ready'` when connected). */
export function redisStatus(queue: Queue): string {
  return queue.client.status;
}

/** Job counts of a queue that has nothing in it, as `jobCounts()` reports them. */
export const NO_JOBS = {
  active: 0,
  completed: 0,
  delayed: 0,
  failed: 0,
  paused: 0,
  waiting: 0,
};

/** Removes every trace of the app's queues from Redis and closes the app. */
export async function closeLibApp(
  app: INestApplication | undefined,
  queueNames: string[],
) {
  if (!app) return;
  if (LIB_QUEUE === 'bullmq') {
    await closeFacadeWorkers(
      queueNames.map((name) => app.get(getQueueToken(name), { strict: false })),
    );
  }
  for (const name of queueNames) {
    const queue = bullQueue(app, name);
    await queue.obliterate({ force: true }).catch(() => undefined);
  }
  await app.close();
}

/** Waits until `predicate` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(
  predicate: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
