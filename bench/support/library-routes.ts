import { Controller, INestApplication, Post, Type } from '@nestjs/common';
import { ClsModule } from 'nestjs-cls';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  TransactionalModule,
  getTransactionAwareQueueToken,
} from 'nestjs-transactional-jobs';
import { BenchRow } from './bench-row.entity';
import type { Payload } from './hand-written-routes';

/** Variant B (and D): the library. */
export function libraryController(queueName: string): Type<unknown> {
  @Controller()
  class LibraryController {
    constructor(
      private readonly tx: TransactionHost,
      @InjectTransactionAwareQueue(queueName)
      private readonly queue: TransactionAwareQueue<Payload>,
    ) {}

    /** B: insert through the transaction's repository; the job is flushed after COMMIT. */
    @Post('b')
    @Transactional()
    async insertAndEnqueue() {
      const row = await this.tx.getRepository(BenchRow).save({ label: 'b' });
      await this.queue.add({ id: row.id });
      return { id: row.id };
    }

    /** B without the interceptor: the same scope entered with `withTransaction()`. */
    @Post('e')
    insertAndEnqueueWithHost() {
      return this.tx.withTransaction(async () => {
        const row = await this.tx.getRepository(BenchRow).save({ label: 'e' });
        await this.queue.add({ id: row.id });
        return { id: row.id };
      });
    }
  }
  return LibraryController;
}

/**
 * Module imports of an app with the library: `TransactionalModule.forRoot()` (defaults: no
 * ClsModule, ClsService only); with `cls: 'mount'`, nestjs-cls registered
 * by the app with its middleware mounted on every route; with `cls: 'none'`, no ClsModule.
 */
export function libraryImports(
  awareQueue: string,
  cls: 'default' | 'mount' | 'none',
) {
  return [
    ...(cls === 'default'
      ? [TransactionalModule.forRoot()]
      : [
          ...(cls === 'mount'
            ? [ClsModule.forRoot({ global: true, middleware: { mount: true } })]
            : []),
          TransactionalModule.forRoot({ registerClsModule: false }),
        ]),
    TransactionalModule.registerQueue({ name: awareQueue }),
  ];
}

/** The library's counters: hook failures and failed flushes must be 0. */
export function libraryStats(app: INestApplication, awareQueue: string) {
  const aware = app.get<TransactionAwareQueue>(
    getTransactionAwareQueueToken(awareQueue),
    { strict: false },
  );
  return {
    runner: { ...app.get(TransactionRunner).stats },
    [awareQueue]: { ...aware.stats },
  };
}
