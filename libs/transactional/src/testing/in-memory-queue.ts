import type { JobOptions, Queue } from 'bull';
import { identifyJob } from '../bull-job-ids';
import type { BulkJob } from '../transactional.interfaces';
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
  /** Jobs by id: Bull ignores an add() with the id of a job it holds. */
  private readonly held = new Map<string, CapturedJob<T>>();

  constructor(
    readonly name: string,
    private readonly recorder: JobRecorder,
  ) {}

  add(data: T, opts?: JobOptions): Promise<CapturedJob<T>>;
  add(name: string, data: T, opts?: JobOptions): Promise<CapturedJob<T>>;
  async add(
    nameOrData: string | T,
    dataOrOpts?: T | JobOptions,
    opts?: JobOptions,
  ): Promise<CapturedJob<T>> {
    // NOTE: Bull's own rule: a string first argument is the job name.
    const [name, data, options] =
      typeof nameOrData === 'string'
        ? [nameOrData, dataOrOpts as T, opts]
        : [DEFAULT_JOB_NAME, nameOrData, dataOrOpts as JobOptions | undefined];
    // NOTE: a repeatable job is recorded under its schedule key, as add() resolved with it.
    const id = options?.repeat
      ? identifyJob(this as unknown as Queue, name, data, options).id
      : options?.jobId !== undefined
        ? String(options.jobId)
        : `${this.name}:${++this.nextId}`;
    const existing = this.held.get(id);
    if (existing && !options?.repeat) return existing;
    const job: CapturedJob<T> = { id, name, data, opts: { ...options } };
    this.held.set(id, job);
    await this.recorder.receive(this.name, job);
    return job;
  }

  async addBulk(jobs: BulkJob<T>[]): Promise<CapturedJob<T>[]> {
    const added: CapturedJob<T>[] = [];
    for (const job of jobs) {
      added.push(
        await this.add(job.name ?? DEFAULT_JOB_NAME, job.data, job.opts),
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
): Queue<T> {
  const queue = new InMemoryQueue<T>(name, recorder);
  return unavailable<Queue<T>>(
    adapter === 'bullmq' ? withBullMQJobRules(queue, name) : queue,
    (property) =>
      `Queue "${name}".${property} is not available in TransactionalTestingModule: its ` +
      `in-memory Bull queue only takes add() and addBulk(). Read the jobs with ` +
      `TransactionalTestingKit.jobs('${name}').`,
  );
}
