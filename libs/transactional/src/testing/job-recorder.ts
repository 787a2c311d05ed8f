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
  /** Added inside a transaction that has not ended yet, by id. */
  readonly deferred: Map<string, CapturedJob>;
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
        deferred: new Map(),
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
    for (const job of jobs) queue.deferred.set(job.id, job);
  }

  /** Moves the jobs with these ids from deferred to dropped (their scope rolled back). */
  drop(queueName: string, ids: string[]): void {
    const queue = this.queue(queueName, 'rollback');
    for (const id of ids) {
      const job = queue.deferred.get(id);
      if (!job) continue;
      queue.deferred.delete(id);
      queue.dropped.push(job);
    }
  }

  /**
   * Records a job the in-memory queue received and, in `'run'` mode, awaits its handler. A
   * handler's failure is recorded, never thrown: the job was enqueued, its processing failed.
   */
  async receive(queueName: string, job: CapturedJob): Promise<void> {
    const queue = this.queue(queueName, 'Queue.add');
    queue.deferred.delete(job.id);
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
      queue.deferred.clear();
      queue.enqueued.length = 0;
      queue.dropped.length = 0;
    }
  }
}
