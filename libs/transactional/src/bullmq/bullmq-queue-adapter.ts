import type {
  AdapterJob,
  QueueAdapter,
  RedisClientLike,
} from '../adapters/queue-adapter';
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

  identify(_name: string, _data: unknown, opts: Record<string, any>) {
    // NOTE: read only when present: the testing kit's in-memory queue throws on other properties.
    const defaults =
      'jobsOpts' in this.queue
        ? (this.queue as { jobsOpts?: Record<string, any> }).jobsOpts
        : undefined;
    return identifyBullMQJob(this.queue.name, defaults, opts);
  }

  async enqueue(jobs: AdapterJob[], bulk = false): Promise<unknown> {
    // NOTE: BullMQ's addBulk is one MULTI: all the jobs or none.
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
