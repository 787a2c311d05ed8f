import { TransactionalError } from '../errors/transactional.error';
import type { JobDiverter } from '../transactional.interfaces';
import {
  WrappingAdapter,
  type AdapterJob,
  type QueueAdapter,
} from './queue-adapter';

/**
 * A `QueueAdapter` that shows the jobs to a `JobDiverter` before they reach the queue, and
 * hands the queue only those the diverter gives back. Repeatable jobs go to the queue as they
 * are. Internal.
 */
export class DivertingAdapter extends WrappingAdapter {
  constructor(
    inner: QueueAdapter,
    private readonly diverter: JobDiverter,
    private readonly queueName: string,
  ) {
    super(inner);
  }

  async enqueue(jobs: AdapterJob[], bulk?: boolean): Promise<unknown> {
    const shown = jobs.filter((job) => !job.repeat);
    if (shown.length === 0) return this.inner.enqueue(jobs, bulk);
    const kept = new Set<unknown>(await this.diverter.divert(shown));
    const given = new Set<unknown>(shown);
    for (const job of kept) {
      if (!given.has(job)) {
        throw new TransactionalError(
          `The diverter of queue "${this.queueName}" gave back a job it was not shown; it ` +
            'must resolve with a subset of the jobs it was given (the same objects).',
        );
      }
    }
    const rest = jobs.filter((job) => job.repeat || kept.has(job));
    if (rest.length === 0) return [];
    return this.inner.enqueue(rest, bulk);
  }
}
