import type { InjectionToken } from '@nestjs/common';
import type { IsolationLevel } from 'typeorm/driver/types/IsolationLevel';
import type { Propagation } from './propagation';
import type { QueueKind } from './adapters/queue-adapter';

export type { QueueKind };

export type { IsolationLevel };

/** Options of one `@Transactional()` scope (or `TransactionHost.withTransaction`). */
export interface TransactionalOptions {
  /** How the scope relates to an active transaction. Default: `Propagation.Required`. */
  propagation?: Propagation;
  /**
   * Isolation level of a transaction this scope opens. Ignored when the scope joins an active
   * transaction or opens a savepoint. Default: the database's (READ COMMITTED on Postgres).
   */
  isolationLevel?: IsolationLevel;
  /** Name of the TypeORM DataSource. Default: `'default'`. */
  connectionName?: string;
  /**
   * On a controller route handler, open the scope in `TransactionalInterceptor` rather than
   * around the handler body, so that pipes and later interceptors run in the transaction, and
   * handlers returning an Observable are covered. Ignored elsewhere. Default: `false`.
   */
  useInterceptor?: boolean;
}

/** What a `TransactionAwareQueue` does when `add()` is called outside a transaction. */
export type NoTransactionPolicy = 'enqueue' | 'warn' | 'throw';

/** What the detector does when a plain Bull queue's `add()` runs inside a transaction. */
export type PlainQueuePolicy = 'warn' | 'throw' | 'off';

/** Options of `TransactionalModule.forRoot()`. */
export interface TransactionalModuleOptions {
  /**
   * Names of the TypeORM DataSources to manage. A `TransactionHost` is provided for each under
   * `getTransactionHostToken(name)`; the default one also as the `TransactionHost` class.
   * Default: `['default']`.
   */
  connectionNames?: string[];
  /**
   * Also register `ClsModule.forRoot({ global: true })`. Off by default: transaction scopes
   * enter their own CLS context, and ClsModule installs a global guard and interceptor on every
   * route even when nothing is mounted (measured: 17-29% more CPU per request). `ClsService`
   * is provided either way, and an application may register nestjs-cls itself. Default: `false`.
   */
  registerClsModule?: boolean;
  /**
   * Detection of the bug this library exists for: a plain Bull `queue.add()` inside an active
   * transaction. `'warn'` logs a warning naming the queue, `'throw'` rejects the `add()` with
   * `PlainQueueInTransactionError`, `'off'` disables the check. Default: `'warn'`.
   */
  plainQueueInTransaction?: PlainQueuePolicy;
  /**
   * Longest wait for a pooled connection when a scope opens a transaction; then the scope
   * rejects with `ConnectionAcquireTimeoutError` naming the pool and the likely cause
   * (REQUIRES_NEW inside a transaction with a pool that is too small). Default: `30000` ms.
   */
  acquireTimeoutMs?: number;
  /**
   * Postgres (node-postgres) only: a transaction's `BEGIN` (with its isolation level) is not a
   * round trip of its own but goes out in front of the transaction's first statement, in the
   * same write; a transaction that runs no statement sends no `BEGIN`, `COMMIT` or `ROLLBACK`.
   * Postgres takes the snapshot at the first statement anyway; `now()` is the first statement's
   * time. And the outbox rows of durable jobs added in the root scope are written by one INSERT
   * in front of `COMMIT`, in the same round trip (see the README's "Durable mode"). `false` sends
   * `BEGIN` when the scope opens, as TypeORM does, and writes outbox rows at `add()`.
   * Default: `true`.
   */
  coalesceRoundTrips?: boolean;
  /**
   * Longest time a caller waits for the after-commit (or after-rollback) work of one
   * transaction, all steps together (queue flushes, `afterCommit` hooks). What is not done by
   * then goes on in the background, each further step bounded by the same time; a step that
   * outlives it is logged as failed and not cancelled. Default: `10000` ms.
   */
  afterCommitTimeoutMs?: number;
  /**
   * Longest time the application's shutdown (`app.close()`, Nest's `beforeApplicationShutdown`)
   * waits for the transactions in progress and their after-commit work before it stops the
   * outbox relays and closes the queues; what is still running then is logged. Keep it under
   * the time your platform gives a stopping process (Kubernetes' `terminationGracePeriodSeconds`,
   * 30 s by default). Default: `10000` ms.
   */
  shutdownTimeoutMs?: number;
  /**
   * The transactional outbox for durable queues (see `TransactionAwareQueueOptions.durable`).
   * Without it, durable queues are refused. Default: none.
   */
  outbox?: import('./outbox/outbox.options').OutboxOptions;
}

/** Options of `TransactionalModule.forRootAsync()`. */
export interface TransactionalModuleAsyncOptions {
  /** Modules that export the providers `useFactory` injects. */
  imports?: any[];
  /** Providers passed to `useFactory`. */
  inject?: any[];
  /** Builds the options; may be async. */
  useFactory: (
    ...args: any[]
  ) => TransactionalModuleOptions | Promise<TransactionalModuleOptions>;
  /**
   * Whether to register nestjs-cls (see `TransactionalModuleOptions.registerClsModule`); it
   * has to be known before the factory runs. Default: `false`.
   */
  registerClsModule?: boolean;
}

/** Options of `TransactionalModule.registerQueue()`: one Bull queue made transaction-aware. */
export interface TransactionAwareQueueOptions {
  /** Name of the Bull queue, as registered with `BullModule.registerQueue({ name })`. */
  name: string;
  /** What `add()` does outside a transaction. Default: `'enqueue'`. */
  whenNoTransaction?: NoTransactionPolicy;
  /** Connection whose transactions this queue defers to. Default: `'default'`. */
  connectionName?: string;
  /**
   * Durable mode: a job added in a transaction is also written to the outbox table in that
   * transaction, so that the relay enqueues it even if the process dies, or Redis is down,
   * between the commit and the enqueue. Needs `TransactionalModule.forRoot({ outbox })`.
   * After the commit the fast path waits for Redis at most `outbox.fastPathTimeoutMs`, then
   * leaves the rows to the relay. Overridable per call with `opts.durable`. Default: `false`.
   */
  durable?: boolean;
  /**
   * The library of the wrapped queue: `'bull'` (`bull` with `@nestjs/bull`) or `'bullmq'`
   * (`bullmq` with `@nestjs/bullmq`). Default: detected from the queue registered under the
   * name (an instance of BullMQ's `Queue` or of Bull's).
   */
  adapter?: QueueKind;
  /**
   * Token of a provider implementing {@link JobDiverter}: it sees the jobs of this queue each
   * time they are about to reach Redis (after the commit, from the outbox relay, or outside a
   * transaction) and may take some of them elsewhere. Default: none (every job goes to the
   * queue).
   */
  diverter?: InjectionToken;
  /**
   * Under load, jobs handed to the queue while one of its calls to Redis is in flight (the
   * after-commit flushes of transactions that commit together, adds outside a transaction) go
   * in one call at the end of the event loop's turn (`setImmediate`): one diverter call and one
   * `addBulk()` instead of one round trip per transaction. A flush that finds the queue idle
   * goes at once, so an idle queue adds no wait. Each transaction's flush still succeeds or
   * fails on its own: when the combined call fails, each caller's jobs are handed over again
   * alone. Repeatable jobs are never combined. It may save Redis round trips and CPU at
   * saturation (measured: from nothing to a third more requests/s) and costs latency below it: a
   * flush that waits for the turn's end is late by the rest of the turn (1-3 ms at the median in
   * a loaded process; see the README's "Performance"). Default: `false`.
   */
  coalesceEnqueues?: boolean;
}

/** A job about to be handed to its queue, as a {@link JobDiverter} sees it. */
export interface OutgoingJob {
  /** The job's name (the queue library's default name when it was added without one). */
  readonly name: string;
  /** The job's data. */
  readonly data: unknown;
  /** The job's options, with the `jobId` it was given inside the transaction. */
  readonly opts: Readonly<Record<string, any>>;
}

/**
 * Takes some of a queue's jobs elsewhere instead of the queue, at the moment they would reach
 * Redis: for example, jobs for a resource that is busy, parked where the worker that frees it
 * picks them up, so that they never cost a job cycle in a worker. Registered with
 * `registerQueue({ name, diverter: TOKEN })`; repeatable jobs are never shown to it.
 *
 * The delivery guarantees of the queue extend to the jobs it diverts only if it keeps them as
 * reliably as the queue would: it resolves once they are stored. When it rejects, the library
 * treats the batch as one Redis refused: non-durable jobs are counted as failed, durable ones
 * are left to the outbox relay, which shows them to the diverter again. It must therefore be
 * idempotent: a job (same `opts.jobId`) may be shown more than once. One call may hold the jobs
 * of several transactions (see `TransactionAwareQueueOptions.coalesceEnqueues`); when it fails,
 * each transaction's jobs are shown to it again on their own.
 */
export interface JobDiverter {
  /**
   * Resolves with the jobs the queue should still get: a subset of `jobs` (the same objects;
   * order does not matter). Those left out count as enqueued.
   */
  divert(jobs: readonly OutgoingJob[]): Promise<readonly OutgoingJob[]>;
}

/**
 * The job options of queue type `Q`: Bull's `JobOptions` for a Bull queue (the default), else
 * the third parameter of `Q['add']` (BullMQ's `JobsOptions`).
 */
export type JobOptionsOf<Q> = Q extends import('bull').Queue<any>
  ? import('bull').JobOptions
  : Q extends { add(name: string, data: any, opts?: infer O): any }
    ? NonNullable<O>
    : import('bull').JobOptions;

/**
 * The job options of the wrapped queue (Bull's by default, BullMQ's for a BullMQ `Queue`), plus
 * `durable` to override the queue's durable mode for one job.
 */
export type TransactionAwareJobOptions<Q = import('bull').Queue> =
  JobOptionsOf<Q> & {
    durable?: boolean;
  };

/** One job of `TransactionAwareQueue.addBulk()`, as in Bull's (or BullMQ's) `addBulk`. */
export interface BulkJob<T, Q = import('bull').Queue> {
  /** Job name (for named processors). Default: `'__default__'` (Bull's default name). */
  name?: string;
  /** Job payload. */
  data: T;
  /** Job options; `jobId` is generated when absent. `durable` as in `add()`. */
  opts?: TransactionAwareJobOptions<Q>;
}
