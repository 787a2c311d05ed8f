import { Logger } from '@nestjs/common';
import type { JobOptions, Queue } from 'bull';
import { identifyJob } from '../bull-job-ids';
import { PlainQueueInTransactionError } from '../errors/plain-queue-in-transaction.error';
import { transactionStorage } from '../transaction-storage';
import type { BulkJob, PlainQueuePolicy } from '../transactional.interfaces';
import type { JobRecorder } from './job-recorder';
import type { CapturedJob } from './testing.interfaces';
import { unavailable } from './unavailable';
import { withBullMQJobRules } from './bullmq-rules';

/** Bull's name for jobs added without a name. */
export const DEFAULT_JOB_NAME = '__default__';

/**
 * The part of a Bull queue `TransactionAwareQueue` writes to (`add`, `addBulk`), in memory:
 * each job goes to the recorder, which captures it and, in `'run'` mode, processes it before
 * `add` resolves. Internal to the kit.
 */
class InMemoryQueue<T> {
  private nextId = 0;

  constructor(
    readonly name: string,
    private readonly recorder: JobRecorder,
    private readonly adapter: 'bull' | 'bullmq' = 'bull',
    private readonly plainPolicy: PlainQueuePolicy = 'warn',
  ) {}

  /**
   * The plain-queue detector's rule (`plainQueueInTransaction`): `TransactionAwareQueue`
   * enqueues with no transaction bound, so only a plain add() in a transaction trips it.
   */
  private detectPlainAdd(method: 'add' | 'addBulk'): void {
    if (this.plainPolicy === 'off' || !transactionStorage.hasAny()) return;
    const error = new PlainQueueInTransactionError(
      this.name,
      method,
      this.adapter === 'bullmq' ? 'BullMQ queue' : 'Bull queue',
    );
    if (this.plainPolicy === 'throw') throw error;
    new Logger('Transactional').warn(error.message);
  }

  add(data: T, opts?: JobOptions): Promise<CapturedJob<T>>;
  add(name: string, data: T, opts?: JobOptions): Promise<CapturedJob<T>>;
  async add(
    nameOrData: string | T,
    dataOrOpts?: T | JobOptions,
    opts?: JobOptions,
  ): Promise<CapturedJob<T>> {
    this.detectPlainAdd('add');
    return this.put(nameOrData, dataOrOpts, opts);
  }

  private async put(
    nameOrData: string | T,
    dataOrOpts?: T | JobOptions,
    opts?: JobOptions,
  ): Promise<CapturedJob<T>> {
    // NOTE: Bull's own rule: a string first argument is the job name.
    const [name, data, options] =
      typeof nameOrData === 'string'
        ? [nameOrData, dataOrOpts as T, opts]
        : [DEFAULT_JOB_NAME, nameOrData, dataOrOpts as JobOptions | undefined];
    // NOTE: what Bull's and BullMQ's own add() refuse, for a plain add() (`queue.queue.add`):
    // data JSON cannot write (both serialise it, below), and BullMQ's job rules.
    if (this.adapter === 'bullmq')
      this.assertBullMQAccepts(name, data, options);
    // NOTE: a repeatable job is recorded under its schedule key, as add() resolved with it.
    const id = options?.repeat
      ? identifyJob(this as unknown as Queue, name, data, options).id
      : options?.jobId !== undefined
        ? String(options.jobId)
        : `${this.name}:${++this.nextId}`;
    // NOTE: the job as a worker gets it back from Redis: data through JSON (a Date becomes a
    // string, functions and undefined go), and Bull's defaults for an empty name or no data.
    const json = JSON.stringify(data);
    const stored = (json === undefined ? {} : JSON.parse(json)) as T;
    const job: CapturedJob<T> =
      this.adapter === 'bull'
        ? {
            id,
            name: name || DEFAULT_JOB_NAME,
            data: stored ?? ({} as T),
            opts: { ...options },
          }
        : { id, name, data: stored, opts: { ...options } };
    return (await this.recorder.offer(
      this.name,
      job,
      Boolean(options?.repeat),
    )) as CapturedJob<T>;
  }

  /** Throws what BullMQ's `Queue.add()` throws for this job, with BullMQ's messages. */
  private assertBullMQAccepts(name: string, data: T, opts?: JobOptions) {
    const jobId: unknown = opts?.jobId;
    if (jobId !== undefined) {
      const id = String(jobId);
      if (id === '0' || id.startsWith('0:')) {
        throw new Error("JobId cannot be '0' or start with '0:'");
      }
      if (`${parseInt(id, 10)}` === id) {
        throw new Error('Custom Id cannot be integers');
      }
      if (id.includes(':') && id.split(':').length !== 3) {
        throw new Error('Custom Id cannot contain :');
      }
    }
    const Job = (this as { Job?: any }).Job;
    if (typeof Job === 'function') {
      const job = new Job(this, name, data, opts ?? {}, jobId);
      job.validateOptions(job.asJSON());
    }
  }

  async addBulk(jobs: BulkJob<T>[]): Promise<CapturedJob<T>[]> {
    this.detectPlainAdd('addBulk');
    const added: CapturedJob<T>[] = [];
    for (const job of jobs) {
      added.push(
        await this.put(job.name ?? DEFAULT_JOB_NAME, job.data, job.opts),
      );
    }
    return added;
  }
}

/**
 * An in-memory stand-in for the Bull queue `name` (or BullMQ's, with `adapter: 'bullmq'`: then
 * with BullMQ's job rules, see `withBullMQJobRules`); anything but `name`, `add` and `addBulk`
 * throws a `TransactionalError` that says so. Internal to the kit.
 */
export function inMemoryQueue<T>(
  name: string,
  recorder: JobRecorder,
  adapter: 'bull' | 'bullmq' = 'bull',
  plainPolicy: PlainQueuePolicy = 'warn',
): Queue<T> {
  const queue = new InMemoryQueue<T>(name, recorder, adapter, plainPolicy);
  return unavailable<Queue<T>>(
    adapter === 'bullmq' ? withBullMQJobRules(queue, name) : queue,
    (property) =>
      `Queue "${name}".${property} is not available in TransactionalTestingModule: its ` +
      `in-memory Bull queue only takes add() and addBulk(). Read the jobs with ` +
      `TransactionalTestingKit.jobs('${name}').`,
  );
}
