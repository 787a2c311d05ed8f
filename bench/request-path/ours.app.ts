import {
  Controller,
  INestApplication,
  Injectable,
  Post,
  Type,
} from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  TransactionalModule,
  createOutboxMigration,
  getTransactionAwareQueueToken,
} from 'nestjs-transactional-jobs';
import { DataSource } from 'typeorm';
import { BenchRow, JobData, PAYLOAD, insertedId } from './bench-row.entity';

/** Commit-to-enqueued times (ms) of `POST /probe`, while the orchestrator has the probe on. */
export const probe = { on: false, ms: [] as number[] };

/**
 * Module imports of ours: o2 (and o2c) makes its queue durable, with an outbox table of its own;
 * o1c and o2c combine the flushes that come while a Redis call is in flight (`coalesceEnqueues`).
 */
export function oursImports(
  mode: string,
  queueName: string,
  outboxTable: string,
) {
  const durable = mode === 'o2' || mode === 'o2c';
  const coalesceEnqueues = mode === 'o1c' || mode === 'o2c';
  // NOTE: bench:instructions runs the server under valgrind, about 20 times slower, and scales
  // the marking delay with it so that one UPDATE marks as many rows as at native speed.
  const markDelay = process.env.BENCH_OUTBOX_MARK_DELAY_MS;
  const outbox = {
    tableName: outboxTable,
    ...(markDelay ? { markBatchDelayMs: Number(markDelay) } : {}),
  };
  return [
    TransactionalModule.forRoot(durable ? { outbox } : {}),
    TransactionalModule.registerQueue({
      name: queueName,
      durable,
      coalesceEnqueues,
    }),
  ];
}

/** Creates o2's outbox table with the library's own migration. */
export async function createOutbox(
  dataSource: DataSource,
  outboxTable: string,
) {
  const Migration = createOutboxMigration({ tableName: outboxTable });
  const runner = dataSource.createQueryRunner();
  try {
    await new Migration().up(runner);
  } finally {
    await runner.release();
  }
}

/** The controller (and providers) of o1, o1i, o1s and o2. */
export function oursController(
  mode: string,
  queueName: string,
): { controller: Type<unknown>; providers: Type<unknown>[] } {
  @Injectable()
  class RowService {
    constructor(
      private readonly tx: TransactionHost,
      @InjectTransactionAwareQueue(queueName)
      private readonly queue: TransactionAwareQueue<JobData>,
    ) {}

    /** o1s: the scope on a service method. */
    @Transactional()
    async benchCreate() {
      const id = insertedId(
        await this.tx.manager.insert(BenchRow, {
          label: mode,
          payload: PAYLOAD,
        }),
      );
      await this.queue.add({ id });
      return { id };
    }
  }

  /** o1s: the handler calls the service. */
  @Controller()
  class ServiceController {
    constructor(private readonly rows: RowService) {}

    @Post('r')
    benchHandler() {
      return this.rows.benchCreate();
    }
  }

  /** o1, o1i, o2: the scope on the handler; `POST /probe`: o1 with a stopwatch. */
  @Controller()
  class HandlerController {
    constructor(
      private readonly tx: TransactionHost,
      @InjectTransactionAwareQueue(queueName)
      private readonly queue: TransactionAwareQueue<JobData>,
    ) {}

    @Post('r')
    @Transactional({ useInterceptor: mode === 'o1i' })
    async benchHandler() {
      const id = insertedId(
        await this.tx.manager.insert(BenchRow, {
          label: mode,
          payload: PAYLOAD,
        }),
      );
      await this.queue.add({ id });
      return { id };
    }

    /** From right after COMMIT (and the connection's release) to Redis having taken the job. */
    @Post('probe')
    @Transactional()
    async handleWithStopwatch() {
      const id = insertedId(
        await this.tx.manager.insert(BenchRow, {
          label: mode,
          payload: PAYLOAD,
        }),
      );
      let committedAt = 0;
      await this.tx.afterCommit(() => {
        committedAt = performance.now();
      });
      await this.queue.add({ id });
      // NOTE: after-commit steps run in registration order, each awaited: this one runs once
      // the job batch registered above has been taken by Redis.
      await this.tx.afterCommit(() => {
        if (probe.on) probe.ms.push(performance.now() - committedAt);
      });
      return { id };
    }
  }

  return mode === 'o1s'
    ? { controller: ServiceController, providers: [RowService] }
    : { controller: HandlerController, providers: [] };
}

/** The library's counters: failed flushes and hook failures must be 0. */
export function oursStats(app: INestApplication, queueName: string) {
  const queue = app.get<TransactionAwareQueue>(
    getTransactionAwareQueueToken(queueName),
    {
      strict: false,
    },
  );
  return {
    runner: { ...app.get(TransactionRunner).stats },
    queue: { ...queue.stats },
  };
}
