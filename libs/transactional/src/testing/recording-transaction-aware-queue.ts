import type { JobOptions, Queue } from 'bull';
import { TransactionAwareQueue } from '../transaction-aware-queue';
import type { TransactionHost } from '../transaction-host';
import type {
  BulkJob,
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
  ) {
    // NOTE: the in-memory queue cannot be told apart by its shape: Bull unless said otherwise.
    super({ ...options, adapter: options.adapter ?? 'bull' }, () => inMemory);
  }

  override add(data: T, opts?: JobOptions): Promise<string>;
  override add(name: string, data: T, opts?: JobOptions): Promise<string>;
  override async add(
    nameOrData: string | T,
    dataOrOpts?: T | JobOptions,
    opts?: JobOptions,
  ): Promise<string> {
    // NOTE: the parent class's rule: a string first argument is the job name.
    if (typeof nameOrData === 'string') {
      const [job] = this.record([
        { name: nameOrData, data: dataOrOpts as T, opts },
      ]);
      return super.add(job.name, job.data, job.opts);
    }
    const [job] = this.record([
      { data: nameOrData, opts: dataOrOpts as JobOptions | undefined },
    ]);
    return super.add(job.data, job.opts);
  }

  override async addBulk(jobs: BulkJob<T>[]): Promise<string[]> {
    return super.addBulk(this.record(jobs));
  }

  /**
   * Gives each job its id now (as the parent would, with the same rule: none for a repeatable
   * job, which is recorded under its schedule key) so that the deferral is recorded
   * synchronously, in the caller's scope, even when `add()` is not awaited.
   */
  private record(jobs: BulkJob<T>[]): CapturedJob<T>[] {
    const captured = jobs.map((job) => {
      const name = job.name ?? this.adapter.defaultJobName;
      const { id, opts } = this.adapter.identify(
        name,
        job.data,
        job.opts ?? {},
      );
      return { id, name, data: job.data, opts };
    });
    if (this.host.isActive) {
      const ids = captured.map((job) => job.id);
      this.recorder.defer(this.name, captured);
      this.host.afterRollback(
        () => this.recorder.drop(this.name, ids),
        `testing kit: drop job(s) ${ids.join(', ')} of queue "${this.name}"`,
      );
    }
    return captured;
  }
}
