/**
 * One benchmarked Nest application (one mode of `bench/request-path/modes.ts`), run as a child
 * process of `bench/request-path.ts` under the Node version being measured. BENCH_MODE picks the
 * mode; only that mode's libraries are loaded (the library and the peers have process-wide
 * effects: AsyncLocalStorage, typeorm-transactional's patches of TypeORM, the library's check of
 * Bull's `Queue.prototype.add`).
 */
import 'reflect-metadata';
import { BullModule, getQueueToken } from '@nestjs/bull';
import { INestApplication, Module, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule, TypeOrmModuleOptions } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import type { AddressInfo } from 'net';
import { IntervalHistogram, monitorEventLoopDelay } from 'perf_hooks';
import { DataSource } from 'typeorm';
import { BenchRow, JobData } from './bench-row.entity';
import {
  BULL_PREFIX,
  OrchestratorMessage,
  ServerMessage,
  databaseUrl,
  namesOf,
  redisUrl,
} from './config';
import { modeOf } from './modes';

function send(message: ServerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, undefined, undefined, () => resolve());
  });
}

async function main() {
  const mode = modeOf(process.env.BENCH_MODE ?? '');
  const runId = process.env.BENCH_RUN_ID;
  if (!runId) throw new Error('BENCH_RUN_ID must be set');
  const names = namesOf(runId, mode.key);
  const typeorm: TypeOrmModuleOptions = {
    type: 'postgres',
    url: databaseUrl(),
    entities: [BenchRow],
    synchronize: false,
    // NOTE: idle connections go back soon: ten apps share a Postgres with max_connections 100.
    extra: {
      max: Number(process.env.BENCH_POOL_SIZE ?? 10),
      idleTimeoutMillis: 1000,
    },
  };
  const imports: any[] = [
    BullModule.forRoot({ url: redisUrl(), prefix: BULL_PREFIX }),
    BullModule.registerQueue({ name: names.queue }),
  ];
  const controllers: Type<unknown>[] = [];
  const providers: Type<unknown>[] = [];
  let stats: ((app: INestApplication) => Record<string, unknown>) | undefined;
  let probe: { on: boolean; ms: number[] } | undefined;

  switch (mode.family) {
    case 'plain': {
      const { plainController, plainProbe } = await import('./plain.app');
      imports.unshift(TypeOrmModule.forRoot(typeorm));
      controllers.push(plainController(mode.key, names.queue));
      if (mode.key === 'b2') probe = plainProbe;
      break;
    }
    case 'ours': {
      const ours = await import('./ours.app');
      if (mode.key === 'o2' || mode.key === 'o2c') {
        const dataSource = await new DataSource({
          type: 'postgres',
          url: databaseUrl(),
        }).initialize();
        await ours
          .createOutbox(dataSource, names.outboxTable)
          .finally(() => dataSource.destroy());
      }
      imports.unshift(TypeOrmModule.forRoot(typeorm));
      imports.push(
        ...ours.oursImports(mode.key, names.queue, names.outboxTable),
      );
      const { controller, providers: own } = ours.oursController(
        mode.key,
        names.queue,
      );
      controllers.push(controller);
      providers.push(...own);
      stats = (app) => ours.oursStats(app, names.queue);
      probe = ours.probe;
      break;
    }
    case 'typeorm-transactional': {
      const p1 = await import('./typeorm-transactional.app');
      imports.unshift(...p1.typeormTransactionalImports(typeorm));
      controllers.push(p1.typeormTransactionalController(names.queue));
      break;
    }
    case 'nestjs-cls': {
      const p2 = await import('./nestjs-cls.app');
      imports.unshift(TypeOrmModule.forRoot(typeorm));
      imports.push(...p2.nestjsClsImports());
      controllers.push(p2.nestjsClsController(names.queue));
      break;
    }
  }
  if (
    mode.family === 'plain' &&
    Object.keys(require.cache).some((f) => f.includes('nestjs-cls'))
  ) {
    throw new Error('a hand-written mode has loaded nestjs-cls');
  }

  class BenchAppModule {}
  Module({ imports, controllers, providers })(BenchAppModule);
  const app = await NestFactory.create(BenchAppModule, {
    logger: ['error', 'warn'],
    abortOnError: false,
  });
  const server = app.getHttpServer();
  server.keepAliveTimeout = 10 * 60_000;
  await app.listen(0, '127.0.0.1');
  await send({ type: 'ready', port: (server.address() as AddressInfo).port });

  // NOTE: Ctrl-C reaches the whole process group; the orchestrator stops this server cleanly.
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => process.exit(0));
  let loopDelay: IntervalHistogram | undefined;
  process.on('message', (message: OrchestratorMessage) => {
    if (message.type === 'cpu') {
      void send({ type: 'cpu', ...process.cpuUsage() });
    } else if (message.type === 'probe') {
      if (!probe)
        return void send({
          type: 'error',
          message: `${mode.key} has no probe`,
        });
      probe.on = message.on;
      if (message.on) {
        probe.ms = [];
        loopDelay = monitorEventLoopDelay({ resolution: 1 });
        loopDelay.enable();
      } else {
        loopDelay?.disable();
        const ms = (ns: number | undefined) => (ns ?? NaN) / 1e6;
        void send({
          type: 'probe',
          ms: probe.ms,
          loopDelayMs: {
            p50: ms(loopDelay?.percentile(50)),
            p99: ms(loopDelay?.percentile(99)),
            max: ms(loopDelay?.max),
          },
        });
      }
    } else if (message.type === 'stop') {
      void stop(app, names.queue, stats).catch(async (error: unknown) => {
        await send({ type: 'error', message: String(error) });
        process.exit(1);
      });
    }
  });
}

/**
 * Waits until the requests autocannon dropped at the end of the last segment (their handlers go
 * on) are done: until the table and the queue have held the same number of rows and jobs for
 * 2 s, or neither count has moved for 5 s (then the check reports the difference).
 */
async function settle(app: INestApplication, queue: Queue<JobData>) {
  const dataSource = app.get(DataSource);
  let last = '';
  let since = Date.now();
  for (;;) {
    const [{ n }] = await dataSource.query(
      `SELECT count(*)::int AS n FROM "${process.env.BENCH_TABLE}"`,
    );
    const jobs = await queue.count();
    const now = `${n}/${jobs}`;
    if (now !== last) [last, since] = [now, Date.now()];
    const quiet = Date.now() - since;
    if (quiet > 5000 || (quiet > 2000 && (jobs === n || jobs === 0))) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stop(
  app: INestApplication,
  queueName: string,
  stats?: (app: INestApplication) => Record<string, unknown>,
) {
  const queue = app.get<Queue<JobData>>(getQueueToken(queueName), {
    strict: false,
  });
  await settle(app, queue);
  const jobs = await queue.getJobs(['waiting', 'delayed', 'paused', 'active']);
  const jobIds = jobs.map((job) => job.data.id);
  const jobCounts = { ...(await queue.getJobCounts()) } as Record<
    string,
    number
  >;
  const libraryStats = stats?.(app);
  await queue.obliterate({ force: true });
  await app.close();
  await send({ type: 'stopped', jobIds, jobCounts, stats: libraryStats });
  process.disconnect?.();
  setTimeout(() => process.exit(0), 5_000).unref();
}

main().catch(async (error: unknown) => {
  await send({
    type: 'error',
    message:
      error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
  process.exit(1);
});
