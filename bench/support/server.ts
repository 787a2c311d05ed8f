/**
 * One benchmarked Nest application, run as a child process of `bench/overhead.ts`, so that the
 * application with the library and the one without it never share a process: the library has
 * process-wide effects (loading nestjs-cls enables AsyncLocalStorage, i.e. async_hooks promise
 * hooks on Node 20; the module patches Bull's `Queue.prototype.add` to detect plain adds
 * inside transactions) that a hand-written baseline in the same process would also pay.
 *
 * BENCH_MODE selects the application (see `SERVER_MODES` in config.ts). Routes: `POST /a`
 * (variant A: hand-written transaction, then a plain Bull add), `POST /c` (variant C: insert
 * only) and `POST /b` (variant B: `@Transactional` + `TransactionAwareQueue`).
 */
import 'reflect-metadata';
import { BullModule, getQueueToken } from '@nestjs/bull';
import { Module, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import type { AddressInfo } from 'net';
import { BenchRow } from './bench-row.entity';
import {
  OrchestratorMessage,
  SERVER_MODES,
  ServerMessage,
  ServerMode,
  databaseUrl,
  queueName,
  redisUrl,
  routesOf,
} from './config';
import { handWrittenController } from './hand-written-routes';

// NOTE: './library-routes' (the library and nestjs-cls) is loaded only by the modes that use
// it: importing nestjs-cls enables AsyncLocalStorage for the whole process.
type LibraryRoutes = typeof import('./library-routes');

function send(message: ServerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, undefined, undefined, () => resolve());
  });
}

async function main() {
  const mode = process.env.BENCH_MODE as ServerMode;
  const runId = process.env.BENCH_RUN_ID;
  if (!runId || !SERVER_MODES.includes(mode)) {
    throw new Error('BENCH_MODE and BENCH_RUN_ID must be set');
  }
  const poolSize = Number(process.env.BENCH_POOL_SIZE ?? 20);
  const routes = routesOf(mode);
  const plainQueue = queueName(runId, mode, 'plain');
  const awareQueue = queueName(runId, mode, 'aware');
  const allQueues = [
    ...(routes.handWritten ? [plainQueue] : []),
    ...(routes.library ? [awareQueue] : []),
  ];

  const imports: any[] = [
    TypeOrmModule.forRoot({
      type: 'postgres',
      url: databaseUrl(),
      entities: [BenchRow],
      synchronize: false,
      extra: { max: poolSize },
    }),
    BullModule.forRoot({ url: redisUrl() }),
    BullModule.registerQueue(...allQueues.map((name) => ({ name }))),
  ];
  const controllers: Type<unknown>[] = [];
  if (routes.handWritten) controllers.push(handWrittenController(plainQueue));
  let library: LibraryRoutes | undefined;
  if (routes.library) {
    library = await import('./library-routes');
    const cls =
      mode === 'lib-cls'
        ? 'mount'
        : mode === 'lib-noclsmod'
          ? 'none'
          : 'default';
    imports.push(...library.libraryImports(awareQueue, cls));
    controllers.push(library.libraryController(awareQueue));
  }
  if (mode === 'plain-als') await import('nestjs-cls');
  if (mode === 'plain-clsmod') {
    // NOTE: what TransactionalModule.forRoot({ registerClsModule: true }) registers.
    const { ClsModule } = await import('nestjs-cls');
    imports.push(ClsModule.forRoot({ global: true }));
  }
  if (
    mode === 'plain' &&
    Object.keys(require.cache).some((file) => file.includes('nestjs-cls'))
  ) {
    throw new Error('the app without the library has loaded nestjs-cls');
  }

  class BenchAppModule {}
  Module({ imports, controllers })(BenchAppModule);

  const app = await NestFactory.create(BenchAppModule, {
    logger: ['error', 'warn'],
    abortOnError: false,
  });
  const server = app.getHttpServer();
  // NOTE: the orchestrator keeps its keep-alive sockets open while it loads the other servers.
  server.keepAliveTimeout = 10 * 60_000;
  await app.listen(0, '127.0.0.1');
  await send({ type: 'ready', port: (server.address() as AddressInfo).port });

  // NOTE: Ctrl-C reaches the whole process group; the orchestrator handles it and stops this
  // server cleanly (queues obliterated). If the orchestrator dies, nothing is left to stop us.
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => process.exit(0));

  process.on('message', (message: OrchestratorMessage) => {
    if (message.type === 'cpu') {
      void send({ type: 'cpu', ...process.cpuUsage() });
      return;
    }
    if (message.type !== 'stop') return;
    void (async () => {
      const jobs: Record<string, number> = {};
      for (const name of allQueues) {
        const queue = app.get<Queue>(getQueueToken(name), { strict: false });
        jobs[name] = await queue.count();
        await queue.obliterate({ force: true });
      }
      const libraryStats = library
        ? library.libraryStats(app, awareQueue)
        : undefined;
      await app.close();
      await send({ type: 'stopped', jobs, libraryStats });
      process.disconnect?.();
      // NOTE: a safety net only; the process normally exits by itself once closed.
      setTimeout(() => process.exit(0), 5_000).unref();
    })().catch(async (error: unknown) => {
      await send({ type: 'error', message: String(error) });
      process.exit(1);
    });
  });
}

main().catch(async (error: unknown) => {
  await send({
    type: 'error',
    message:
      error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
  process.exit(1);
});
