import type { Job, JobOptions, Queue } from 'bull';
import { identifyJob } from '../bull-job-ids';
import { removeBullJobHusks } from '../bull-job-husks';
import {
  isolateRefusals,
  PartialEnqueueError,
  type AdapterJob,
  type QueueAdapter,
  type RedisClientLike,
} from './queue-adapter';

/** Bull's name for jobs added without a name. */
export const BULL_DEFAULT_JOB_NAME = '__default__';

/** `QueueAdapter` of a Bull 4 queue. Internal. */
export class BullQueueAdapter implements QueueAdapter {
  readonly kind = 'bull' as const;
  readonly defaultJobName = BULL_DEFAULT_JOB_NAME;

  constructor(private readonly queue: Queue) {}

  identify(name: string, data: unknown, opts: JobOptions) {
    return identifyJob(this.queue, name, data, opts);
  }

  enqueue(jobs: AdapterJob[], bulk = false): Promise<unknown> {
    if (jobs.length < 2) return this.handOver(jobs, bulk);
    // NOTE: a job Bull refuses (its data fails to serialise) fails alone, not its whole batch.
    return isolateRefusals(
      jobs,
      (some) => this.handOver(some, bulk),
      this.client(),
    );
  }

  private handOver(jobs: AdapterJob[], bulk: boolean): Promise<unknown> {
    try {
      if (!bulk && jobs.length === 1) {
        const [job] = jobs;
        return this.queue.add(job.name, job.data, job.opts);
      }
      // NOTE: Bull's addBulk ignores `repeat`: repeatable jobs are added one by one.
      return jobs.some((job) => job.repeat)
        ? Promise.all(
            jobs.map((job) => this.queue.add(job.name, job.data, job.opts)),
          )
        : this.queue
            .addBulk(jobs.map(({ name, data, opts }) => ({ name, data, opts })))
            .then((added) => refuseUnadded(added, jobs));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  client(): RedisClientLike | undefined {
    // NOTE: a stand-in queue without a client (testing kit) has nothing to check.
    return 'client' in this.queue ? this.queue.client : undefined;
  }

  removeHusks(jobIds: string[]) {
    return removeBullJobHusks(this.queue, jobIds);
  }
}

/**
 * Bull's `addBulk` reads only the job ids of its MULTI's replies, so a job whose script Redis
 * refused comes back without an id rather than as an error: such a batch is failed here, with
 * the jobs Redis did take named as such (see `PartialEnqueueError`).
 */
function refuseUnadded(added: Job[], given: AdapterJob[]): Job[] {
  const lost = added.filter((job) => job.id === undefined || job.id === null);
  if (lost.length > 0) {
    throw new PartialEnqueueError(
      `Redis refused ${lost.length} of ${added.length} job(s) of queue ` +
        `"${added[0].queue.name}" (job ids ${lost.map((job) => String(job.opts.jobId)).join(', ')})`,
      new Set(
        given.filter(
          (_, i) => added[i].id === undefined || added[i].id === null,
        ),
      ),
    );
  }
  return added;
}
