import type { JobOptions } from 'bull';
import type { EntityManager } from 'typeorm';
import type {
  PlainQueuePolicy,
  QueueKind,
  TransactionAwareQueueOptions,
} from '../transactional.interfaces';

/**
 * What happens to a job once it reaches a testing queue (after the outermost commit, or at
 * once outside a transaction). `'capture'` records it for `TransactionalTestingKit.jobs()`;
 * `'run'` records it and hands it to the handler registered with `kit.process()`, awaited
 * before the `@Transactional` method resolves.
 */
export type TestingQueueMode = 'capture' | 'run';

/** One queue of `TransactionalTestingModule.forRoot({ queues })`. */
export interface TestingQueueOptions extends TransactionAwareQueueOptions {
  /** What happens to the queue's jobs. Default: the module's `mode`. */
  mode?: TestingQueueMode;
}

/** Options of `TransactionalTestingModule.forRoot()`. */
export interface TransactionalTestingModuleOptions {
  /**
   * Queues to provide as `TransactionAwareQueue`s under `getTransactionAwareQueueToken(name)`
   * (what `@InjectTransactionAwareQueue(name)` injects): Bull queue names, or options objects
   * as for `TransactionalModule.registerQueue()` plus `mode`. Default: `[]`.
   */
  queues?: (string | TestingQueueOptions)[];
  /** Mode of the queues that do not set their own. Default: `'capture'`. */
  mode?: TestingQueueMode;
  /**
   * Library whose rules the queues that do not set their own `adapter` follow (job names, id
   * rules): `'bull'` or `'bullmq'`. Default: `'bull'`.
   */
  adapter?: QueueKind;
  /**
   * BullMQ flow producers to provide as `TransactionAwareFlowProducer`s under
   * `getTransactionAwareFlowProducerToken(name)`. Each job of a flow reaches the testing queue
   * named by its `queueName` (children first), which must be listed in `queues`. Default: `[]`.
   */
  flowProducers?: string[];
  /**
   * Connection names to provide a `TransactionHost` for, as in `TransactionalModule.forRoot`;
   * `'default'` is always included. Default: `['default']`.
   */
  connectionNames?: string[];
  /**
   * What `TransactionHost.manager` (and `getRepository()`) returns, inside and outside
   * transactions, on every connection. Default: an EntityManager that throws a
   * `TransactionalError` naming this option as soon as it is used.
   */
  entityManager?: EntityManager;
  /**
   * Also register `ClsModule.forRoot({ global: true })`, as `TransactionalModule` can.
   * `ClsService` is provided either way. Default: `false`.
   */
  registerClsModule?: boolean;
  /**
   * What a plain `queue.add()` / `addBulk()` (the in-memory queue behind
   * `TransactionAwareQueue.queue`) does inside a transaction, as in `TransactionalModule.forRoot`:
   * `'warn'` (logs), `'throw'` (rejects with `PlainQueueInTransactionError`) or `'off'`.
   * Default: `'warn'`.
   */
  plainQueueInTransaction?: PlainQueuePolicy;
  /**
   * Longest time one after-commit step may take (in `'run'` mode this includes the handlers
   * of the jobs it enqueues); see `TransactionalModuleOptions`. Default: `10000` ms.
   */
  afterCommitTimeoutMs?: number;
  /**
   * The database whose outbox column the durable jobs' data and options are checked against, as
   * the real outbox checks them at `add()` (the kit writes no outbox rows): `'postgres'` refuses
   * a NUL character (`\u0000`, which jsonb cannot store) and a lone UTF-16 surrogate,
   * `'mysql'` (MySQL and MariaDB) a lone surrogate only. Such an `add()` rejects with the
   * `TransactionalError` production gives. Default: `'postgres'`.
   */
  outboxDialect?: 'postgres' | 'mysql';
}

/** A job as it was added: the fields of a Bull `Job` that tests look at. */
export interface CapturedJob<T = unknown> {
  /** The id `TransactionAwareQueue.add()` resolved with (Bull's `jobId`). */
  id: string;
  /** Job name; Bull's `'__default__'` for jobs added without one. */
  name: string;
  /** Job payload. */
  data: T;
  /** Bull job options, `jobId` included. */
  opts: JobOptions;
}

/**
 * Processes one job in `'run'` mode, as a Bull processor would; may be async. A job is shaped
 * like a Bull `Job` (`id`, `name`, `data`, `opts`), so a processor method can be passed one.
 */
export type TestingJobHandler<T = any> = (job: CapturedJob<T>) => unknown;

/** A `'run'` mode job whose handler threw, or that had no handler. */
export interface JobFailure {
  /** Queue name. */
  queue: string;
  /** The job. */
  job: CapturedJob;
  /** What the handler threw. */
  error: unknown;
}
