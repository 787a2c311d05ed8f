import type { JobOptions, Queue } from 'bull';
import type { SqlDialect } from '../dialect/sql-dialect';
import { storableJson, storedData } from '../outbox/outbox-store';
import { TransactionAwareQueue } from '../transaction-aware-queue';
import type { TransactionHost } from '../transaction-host';
import type {
  BulkJob,
  TransactionAwareJobOptions,
  TransactionAwareQueueOptions,
} from '../transactional.interfaces';
import type { JobRecorder } from './job-recorder';
import type { CapturedJob } from './testing.interfaces';

/**
 * The real `TransactionAwareQueue`, which also tells the recorder what it defers: a job added
 * inside a transaction is recorded as deferred, and an after-rollback hook on the same scope
 * moves it to dropped. Deferral, flushing and ordering stay the parent class's. Internal.
 */
export class RecordingTransactionAwareQueue<
  T = unknown,
> extends TransactionAwareQueue<T> {
  constructor(
    options: TransactionAwareQueueOptions,
    private readonly inMemory: Queue<T>,
    /** Host of the queue's connection. */
    private readonly host: TransactionHost,
    private readonly recorder: JobRecorder,
    /** Whose outbox column durable jobs are checked against (see `outboxDialect`). */
    private readonly outboxDialect: SqlDialect = 'postgres',
  ) {
    // NOTE: the in-memory queue cannot be told apart by its shape: Bull unless said otherwise.
    // The kit has no outbox: a durable queue's jobs (and `opts.durable` ones) are deferred,
    // enqueued at the commit and dropped on rollback as plain ones, which is what a test sees
    // of them in production.
    super(
      { ...options, durable: false, adapter: options.adapter ?? 'bull' },
      () => inMemory,
    );
    this.kitDurable = options.durable ?? false;
  }

  /** The queue's own durable mode (the parent class is given `false`). */
  private readonly kitDurable: boolean;

  override add(data: T, opts?: TransactionAwareJobOptions): Promise<string>;
  override add(
    name: string,
    data: T,
    opts?: TransactionAwareJobOptions,
  ): Promise<string>;
  override add(
    nameOrData: string | T,
    dataOrOpts?: T | TransactionAwareJobOptions,
    opts?: TransactionAwareJobOptions,
  ): Promise<string> {
    // NOTE: the parent class's rule: a string first argument is the job name.
    const named = typeof nameOrData === 'string';
    const data = (named ? dataOrOpts : nameOrData) as T;
    const given = (named ? opts : dataOrOpts) as
      | TransactionAwareJobOptions
      | undefined;
    try {
      this.checkStorable(data, given);
    } catch (error) {
      return Promise.reject(error);
    }
    return named
      ? super.add(nameOrData, data, withoutDurable(given))
      : super.add(data, withoutDurable(given));
  }

  override async addBulk(jobs: BulkJob<T>[]): Promise<string[]> {
    for (const job of jobs) this.checkStorable(job.data, job.opts);
    return super.addBulk(
      jobs.map((job) => ({ ...job, opts: withoutDurable(job.opts) })),
    );
  }

  /**
   * Throws, for a durable job, what the outbox would refuse to store (see `storableJson`): the
   * kit writes no outbox rows, so a test would not see the refusal otherwise.
   */
  private checkStorable(
    data: T,
    opts: TransactionAwareJobOptions | undefined,
  ): void {
    if (!(opts?.durable ?? this.kitDurable)) return;
    storableJson(storedData(data), this.name, 'data', this.outboxDialect);
    storableJson(
      withoutDurable(opts) ?? {},
      this.name,
      'options',
      this.outboxDialect,
    );
  }

  /**
   * Records the jobs the parent class has just deferred (every check passed: a job `add()`
   * refuses is never recorded), synchronously in the caller's scope, also when `add()` is not
   * awaited; an after-rollback hook on the same scope moves them to dropped.
   */
  protected override onDeferred(
    jobs: readonly { id: string; name: string; data: T; opts: JobOptions }[],
  ): void {
    const captured: CapturedJob<T>[] = jobs.map((job) => ({
      id: job.id,
      name: job.name,
      data: job.data,
      opts: job.opts,
    }));
    const ids = captured.map((job) => job.id);
    this.recorder.defer(this.name, captured);
    this.host.afterRollback(
      () => this.recorder.drop(this.name, captured),
      `testing kit: drop job(s) ${ids.join(', ')} of queue "${this.name}"`,
    );
  }
}

/** `opts` without `durable` (the kit has no outbox), or `undefined`. */
function withoutDurable(
  opts: TransactionAwareJobOptions | undefined,
): TransactionAwareJobOptions | undefined {
  if (!opts || !('durable' in opts)) return opts;
  const rest = { ...opts };
  delete rest.durable;
  return rest;
}
