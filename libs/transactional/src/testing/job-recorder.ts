import { TransactionalError } from '../errors/transactional.error';
import type {
  CapturedJob,
  JobFailure,
  TestingJobHandler,
  TestingQueueMode,
} from './testing.interfaces';

/** Key of the handler that takes every job name without a handler of its own. */
export const ANY_JOB_NAME = '*';

/** What the kit knows about one queue. */
export interface RecordedQueue {
  readonly name: string;
  readonly mode: TestingQueueMode;
  /**
   * Added inside a transaction that has not ended yet, in order (one entry per add: jobs of
   * several adds, or transactions, may share a jobId).
   */
  readonly deferred: CapturedJob[];
  /**
   * Jobs the in-memory queue holds, by id (Bull and BullMQ ignore an add with the id of a job
   * they hold), whether added to the queue or by a flow.
   */
  readonly held: Map<string, CapturedJob>;
  /** Reached the in-memory queue, in order. */
  readonly enqueued: CapturedJob[];
  /** Dropped by a rollback, in order. */
  readonly dropped: CapturedJob[];
  /** `'run'` mode handlers by job name (`ANY_JOB_NAME` for the fallback). */
  readonly handlers: Map<string, TestingJobHandler>;
}

/**
 * The state behind `TransactionalTestingKit`: each job's way from `add()` (deferred) to the
 * queue (enqueued, and processed in `'run'` mode) or to a rollback (dropped). Internal.
 */
export class JobRecorder {
  /** Failures of `'run'` mode handlers, in order. */
  readonly failures: JobFailure[] = [];
  private readonly queues = new Map<string, RecordedQueue>();

  constructor(modes: ReadonlyMap<string, TestingQueueMode>) {
    for (const [name, mode] of modes) {
      this.queues.set(name, {
        name,
        mode,
        deferred: [],
        held: new Map(),
        enqueued: [],
        dropped: [],
        handlers: new Map(),
      });
    }
  }

  /** The queue `name`, or an error listing the registered ones; `where` names the caller. */
  queue(name: string, where: string): RecordedQueue {
    const queue = this.queues.get(name);
    if (queue) return queue;
    const known = [...this.queues.keys()].map((q) => `"${q}"`).join(', ');
    throw new TransactionalError(
      `${where}: queue "${name}" is not registered with TransactionalTestingModule ` +
        `(registered: ${known || 'none'}). Add it to forRoot({ queues }).`,
    );
  }

  /** Records jobs added inside a transaction. */
  defer(queueName: string, jobs: CapturedJob[]): void {
    const queue = this.queue(queueName, 'TransactionAwareQueue.add');
    queue.deferred.push(...jobs);
  }

  /** Moves these jobs (as `defer` took them) from deferred to dropped (their scope rolled back). */
  drop(queueName: string, jobs: CapturedJob[]): void {
    const queue = this.queue(queueName, 'rollback');
    for (const job of jobs) {
      const at = queue.deferred.indexOf(job);
      if (at < 0) continue;
      queue.deferred.splice(at, 1);
      queue.dropped.push(job);
    }
  }

  /**
   * The queue took (or, holding a job with its id, ignored) the job `id` after a commit: the
   * first deferred job with that id no longer waits.
   */
  settle(queueName: string, id: string): void {
    const queue = this.queue(queueName, 'Queue.add');
    const at = queue.deferred.findIndex((job) => job.id === id);
    if (at >= 0) queue.deferred.splice(at, 1);
  }

  /**
   * Hands `job` to the in-memory queue `queueName`: ignored (and settled) when the queue holds a
   * job with its id, as Bull and BullMQ do (a repeatable job is always taken); else recorded
   * and, in `'run'` mode, processed. Resolves with the job the queue holds.
   */
  async offer(
    queueName: string,
    job: CapturedJob,
    repeat = false,
  ): Promise<CapturedJob> {
    const queue = this.queue(queueName, 'Queue.add');
    const existing = queue.held.get(job.id);
    if (existing && !repeat) {
      this.settle(queueName, job.id);
      return existing;
    }
    queue.held.set(job.id, job);
    await this.receive(queueName, job);
    return job;
  }

  /**
   * Records a job the in-memory queue received and, in `'run'` mode, awaits its handler. A
   * handler's failure is recorded, never thrown: the job was enqueued, its processing failed.
   */
  async receive(queueName: string, job: CapturedJob): Promise<void> {
    const queue = this.queue(queueName, 'Queue.add');
    this.settle(queueName, job.id);
    queue.enqueued.push(job);
    if (queue.mode !== 'run') return;
    const handler =
      queue.handlers.get(job.name) ?? queue.handlers.get(ANY_JOB_NAME);
    try {
      if (!handler) {
        throw new TransactionalError(
          `Queue "${queue.name}" is in 'run' mode but has no handler for job "${job.name}". ` +
            `Register one with TransactionalTestingKit.process('${queue.name}', handler).`,
        );
      }
      await handler(job);
    } catch (error) {
      this.failures.push({ queue: queue.name, job, error });
    }
  }

  /** Forgets every job and failure; handlers stay registered. */
  clear(): void {
    this.failures.length = 0;
    for (const queue of this.queues.values()) {
      queue.deferred.length = 0;
      queue.enqueued.length = 0;
      queue.dropped.length = 0;
    }
  }
}
