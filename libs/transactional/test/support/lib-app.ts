import { BullModule, BullModuleOptions, getQueueToken } from '@nestjs/bull';
import {
  INestApplication,
  LoggerService,
  Provider,
  Type,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import {
  TransactionAwareQueueOptions,
  TransactionalModule,
  TransactionalModuleOptions,
} from '../../src';
import { Order } from './order.entity';
import { testDatabaseUrl, testRedisUrl } from './env';

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
}

/** Boots (and listens on a free loopback port) a Nest app with TypeORM (real Postgres), Bull (real Redis) and the library. */
export async function createLibApp(
  spec: LibAppSpec,
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        type: 'postgres',
        url: spec.databaseUrl ?? testDatabaseUrl(),
        entities: [Order, ...(spec.entities ?? [])],
        synchronize: true,
        extra: { max: spec.poolSize ?? 20 },
      }),
      BullModule.forRoot({ url: testRedisUrl() }),
      BullModule.registerQueue(
        ...spec.queues.map((q) => ({ ...q.bull, name: q.name })),
      ),
      TransactionalModule.forRoot(spec.options ?? {}),
      TransactionalModule.registerQueue(
        ...spec.queues.map(({ bull: _bull, ...options }) => options),
      ),
    ],
    controllers: spec.controllers ?? [],
    providers: spec.providers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({
    logger: spec.logger ?? (process.env.TEST_LOGS ? undefined : false),
  });
  if (spec.listen === false) await app.init();
  else await app.listen(0, '127.0.0.1');
  return app;
}

/** The plain Bull queue registered under `name`. */
export function bullQueue<T = any>(
  app: INestApplication,
  name: string,
): Queue<T> {
  return app.get<Queue<T>>(getQueueToken(name), { strict: false });
}

/** Whether Redis holds a job with this id in the Bull queue. */
export async function inRedis(queue: Queue, jobId: string): Promise<boolean> {
  return (await queue.getJob(jobId)) !== null;
}

/** Job counts of a queue that has nothing in it, as `queue.getJobCounts()` reports them. */
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
