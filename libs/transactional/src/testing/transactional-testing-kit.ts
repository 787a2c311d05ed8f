import { TransactionalError } from '../errors/transactional.error';
import { DEFAULT_CONNECTION_NAME } from '../transactional.constants';
import type { InMemoryTransactionDriver } from './in-memory-transaction-driver';
import { JobProcessingError } from './job-processing.error';
import { ANY_JOB_NAME, JobRecorder } from './job-recorder';
import type {
  CapturedJob,
  JobFailure,
  TestingJobHandler,
} from './testing.interfaces';

/**
 * What a test reads and controls in `TransactionalTestingModule`: the jobs of each queue
 * (deferred, enqueued after commit, dropped by a rollback), the `'run'` mode handlers and
 * their failures, and the statements of the in-memory transactions. Inject it, or
 * `moduleRef.get(TransactionalTestingKit)`.
 *
 * Errors of `'run'` mode handlers are recorded, never thrown into the `@Transactional` method:
 * as in production, the transaction committed and the job was enqueued; only its processing
 * failed. Assert them with `failures()`, or call `assertNoFailures()` (e.g. in `afterEach`).
 */
export class TransactionalTestingKit {
  /** Built by `TransactionalTestingModule`. */
  constructor(
    private readonly recorder: JobRecorder,
    private readonly drivers: ReadonlyMap<string, InMemoryTransactionDriver>,
  ) {}

  /**
   * Jobs that reached queue `queueName`, in order: after the outermost commit of their
   * transaction, or at once when added outside one.
   */
  jobs<T = any>(queueName: string): CapturedJob<T>[] {
    return [...this.queue(queueName, 'jobs').enqueued] as CapturedJob<T>[];
  }

  /** Jobs added inside a transaction that has neither committed nor rolled back yet. */
  deferred<T = any>(queueName: string): CapturedJob<T>[] {
    const queue = this.queue(queueName, 'deferred');
    return [...queue.deferred] as CapturedJob<T>[];
  }

  /** Jobs dropped because their transaction, or their NESTED scope, rolled back. */
  dropped<T = any>(queueName: string): CapturedJob<T>[] {
    return [...this.queue(queueName, 'dropped').dropped] as CapturedJob<T>[];
  }

  /** Registers the `'run'` mode handler of every job of the queue without a named handler. */
  process<T = any>(queueName: string, handler: TestingJobHandler<T>): this;
  /** Registers the `'run'` mode handler of the jobs named `jobName`. */
  process<T = any>(
    queueName: string,
    jobName: string,
    handler: TestingJobHandler<T>,
  ): this;
  process(
    queueName: string,
    nameOrHandler: string | TestingJobHandler,
    handler?: TestingJobHandler,
  ): this {
    const queue = this.queue(queueName, 'process');
    if (queue.mode !== 'run') {
      throw new TransactionalError(
        `TransactionalTestingKit.process('${queueName}'): the queue is in '${queue.mode}' ` +
          `mode, so its jobs are never processed. Register it with mode: 'run'.`,
      );
    }
    if (typeof nameOrHandler === 'string') {
      queue.handlers.set(nameOrHandler, handler as TestingJobHandler);
    } else {
      queue.handlers.set(ANY_JOB_NAME, nameOrHandler);
    }
    return this;
  }

  /** `'run'` mode jobs whose handler threw (or that had none), in order; all queues by default. */
  failures(queueName?: string): JobFailure[] {
    if (queueName !== undefined) this.queue(queueName, 'failures');
    return this.recorder.failures.filter(
      (failure) => queueName === undefined || failure.queue === queueName,
    );
  }

  /** Throws a `JobProcessingError` listing every recorded handler failure, if there is one. */
  assertNoFailures(): void {
    if (this.recorder.failures.length > 0) {
      throw new JobProcessingError([...this.recorder.failures]);
    }
  }

  /**
   * Statements the runner ran on a connection, in order: `'BEGIN'`, `'SAVEPOINT tx_sp_1'`,
   * `'ROLLBACK TO SAVEPOINT tx_sp_1'`, `'RELEASE SAVEPOINT tx_sp_1'`, `'COMMIT'`, `'ROLLBACK'`.
   */
  statements(connectionName: string = DEFAULT_CONNECTION_NAME): string[] {
    return [...this.driver(connectionName, 'statements').statements];
  }

  /**
   * Makes the next `COMMIT` on the connection reject with `error`, as a database refusing it
   * would: the runner rolls back, drops the deferred jobs and rethrows `error` to the caller.
   */
  failNextCommit(
    error: unknown = new Error('COMMIT failed (TransactionalTestingKit)'),
    connectionName: string = DEFAULT_CONNECTION_NAME,
  ): void {
    this.driver(connectionName, 'failNextCommit').failNextCommit(error);
  }

  /** Forgets every job, failure and statement; `'run'` mode handlers stay registered. */
  clear(): void {
    this.recorder.clear();
    for (const driver of this.drivers.values()) driver.statements.length = 0;
  }

  private queue(queueName: string, method: string) {
    return this.recorder.queue(queueName, `TransactionalTestingKit.${method}`);
  }

  private driver(connectionName: string, method: string) {
    const driver = this.drivers.get(connectionName);
    if (driver) return driver;
    throw new TransactionalError(
      `TransactionalTestingKit.${method}: connection "${connectionName}" is not registered; ` +
        `list it in TransactionalTestingModule.forRoot({ connectionNames }).`,
    );
  }
}
