import {
  AdapterJob,
  isolateRefusals,
  QueueAdapter,
  RedisClientLike,
} from '../adapters/queue-adapter';
import { TransactionalError } from '../errors/transactional.error';
import { identifyBullMQJob } from './bullmq-job-ids';

/** The name a BullMQ job added without one gets (Bull's, so that both behave alike). */
export const BULLMQ_DEFAULT_JOB_NAME = '__default__';

/** The members of a BullMQ 5 / 6 `Queue` the adapter uses. */
export interface BullMQQueueLike {
  readonly name: string;
  add(name: string, data: unknown, opts?: any): Promise<unknown>;
  addBulk(
    jobs: { name: string; data: unknown; opts?: any }[],
  ): Promise<unknown>;
}

interface ConnectionHolder {
  _client?: RedisClientLike;
}

/** `QueueAdapter` of a BullMQ 5 or 6 `Queue`. Internal. */
export class BullMQQueueAdapter implements QueueAdapter {
  readonly kind = 'bullmq' as const;
  readonly defaultJobName = BULLMQ_DEFAULT_JOB_NAME;

  constructor(private readonly queue: BullMQQueueLike) {}

  identify(name: string, data: unknown, opts: Record<string, any>) {
    // NOTE: read only when present: the testing kit's in-memory queue throws on other properties.
    const defaults =
      'jobsOpts' in this.queue
        ? (this.queue as { jobsOpts?: Record<string, any> }).jobsOpts
        : undefined;
    const identity = identifyBullMQJob(this.queue.name, defaults, opts);
    validateAsBullMQ(this.queue, name, data, { ...defaults, ...identity.opts });
    return identity;
  }

  enqueue(jobs: AdapterJob[], bulk = false): Promise<unknown> {
    if (jobs.length < 2) return this.handOver(jobs, bulk);
    // NOTE: BullMQ's addBulk validates every job before its MULTI: all the jobs or none. A job
    // it refuses fails alone, not its whole batch.
    return isolateRefusals(
      jobs,
      (some) => this.handOver(some, bulk),
      this.client(),
    );
  }

  private async handOver(jobs: AdapterJob[], bulk: boolean): Promise<unknown> {
    return !bulk && jobs.length === 1
      ? [await this.queue.add(jobs[0].name, jobs[0].data, jobs[0].opts)]
      : await this.queue.addBulk(
          jobs.map(({ name, data, opts }) => ({ name, data, opts })),
        );
  }

  /**
   * The ioredis client of the queue's connection: `queue.backend.connection` (BullMQ 6) or
   * `queue.connection` (BullMQ 5), whose client exists from construction on.
   */
  client(): RedisClientLike | undefined {
    return bullmqRedisClient(this.queue);
  }

  /**
   * BullMQ leaves no job husks: it moves a job to active in one script that checks the job
   * exists, so nothing recreates the hash of a job Redis lost.
   */
  async removeHusks(): Promise<{ removed: string[]; locked: string[] }> {
    return { removed: [], locked: [] };
  }
}

/**
 * The ioredis client of a BullMQ `Queue` or `FlowProducer`: `backend.connection` (BullMQ 6) or
 * `connection` (BullMQ 5), whose client exists from construction on; `undefined` for a
 * stand-in without either (testing kit). Internal.
 */
export function bullmqRedisClient(holder: object): RedisClientLike | undefined {
  const owner = holder as {
    backend?: { connection?: ConnectionHolder };
    connection?: ConnectionHolder;
  };
  if (!('backend' in owner) && !('connection' in owner)) return undefined;
  return (owner.backend?.connection ?? owner.connection)?._client;
}

/** BullMQ's `Job` class, as a `Queue` exposes it, with the two members the check uses. */
type BullMQJobClass = new (
  queue: unknown,
  name: string,
  data: unknown,
  opts: Record<string, any>,
  id?: string,
) => { asJSON(): unknown; validateOptions(jobData: unknown): void };

/**
 * Checks a job as BullMQ's `add()` will after the commit (`Job.validateOptions` on the job's
 * serialised form: `sizeLimit`, a float or too high `priority`, conflicting parent options,
 * `deduplication` without an id, a backoff `jitter` outside 0-1, data `JSON.stringify` cannot
 * write), with the queue's own `Job` class, so the rules are those of the BullMQ installed.
 * Throws a `TransactionalError` inside the transaction, where it rolls back the work, rather
 * than losing the job (and, in an `addBulk()`, the jobs with it) after the commit. Nothing is
 * checked for a stand-in queue without a `Job` class (testing kit).
 */
function validateAsBullMQ(
  queue: BullMQQueueLike,
  name: string,
  data: unknown,
  opts: Record<string, any>,
): void {
  const JobClass =
    'Job' in queue ? (queue as { Job?: BullMQJobClass }).Job : undefined;
  if (typeof JobClass !== 'function') return;
  let job;
  try {
    job = new JobClass(queue, name, data, opts, opts.jobId);
  } catch {
    // NOTE: a stand-in queue lacking what this BullMQ's Job reads: nothing to check it with.
    return;
  }
  try {
    job.validateOptions(job.asJSON());
  } catch (error) {
    throw new TransactionalError(
      `Queue "${queue.name}" (BullMQ) would refuse job "${name}" after the commit: ` +
        `${error instanceof Error ? error.message : String(error)}. Fix the job's data or ` +
        `options; the job was not added.`,
    );
  }
}
