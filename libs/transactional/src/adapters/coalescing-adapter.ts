import {
  PartialEnqueueError,
  type AdapterJob,
  WrappingAdapter,
} from './queue-adapter';

/** One caller's jobs waiting for the next flush. */
interface Waiting {
  jobs: AdapterJob[];
  bulk: boolean | undefined;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * A `QueueAdapter` that combines, under load, the jobs several callers hand over into one call
 * to the queue. A caller that finds the queue idle (no call of this adapter in flight, none
 * waiting) is handed over at once, as it asked (`add()` for one job): an idle queue adds no
 * wait. Callers that come while a call is in flight wait for the end of the current turn of the
 * event loop (`setImmediate`) and go together, as one diverter call and one `addBulk()`: the
 * after-commit flushes of transactions that commit together make one Redis round trip instead
 * of one each. A caller waits at most for the rest of the turn it came in.
 *
 * Each caller still gets its own outcome. When the combined call fails for named jobs
 * (`PartialEnqueueError`), the callers of those jobs get the error and the others are done.
 * When it fails as a whole (a job the queue library cannot serialise, Redis gone), each
 * caller's jobs are handed over again on their own and each caller gets the answer to its own
 * call: a job the queue refuses fails only its own transaction's flush. Handing a job over
 * twice is safe because every job it sees has an id (a repeatable job, which has none, is never
 * combined): the queue ignores an id it holds, and the diverter must be idempotent (see
 * `JobDiverter`). A caller alone in its turn is handed over as it asked. Internal.
 */
export class CoalescingAdapter extends WrappingAdapter {
  private waiting: Waiting[] = [];
  private scheduled = false;
  /** Calls handed over and not answered yet. */
  private inFlight = 0;

  enqueue(jobs: AdapterJob[], bulk?: boolean): Promise<unknown> {
    if (jobs.length === 0 || jobs.some((job) => job.repeat)) {
      return this.inner.enqueue(jobs, bulk);
    }
    if (this.inFlight === 0 && !this.scheduled) {
      return this.handOver(jobs, bulk);
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ jobs, bulk, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.scheduled = false;
    if (waiting.length === 1) {
      const [one] = waiting;
      this.handOver(one.jobs, one.bulk).then(one.resolve, one.reject);
      return;
    }
    this.handOver(
      waiting.flatMap((w) => w.jobs),
      true,
    ).then(
      () => {
        for (const w of waiting) w.resolve(undefined);
      },
      (error: unknown) => {
        if (error instanceof PartialEnqueueError) {
          // NOTE: the queue said which jobs it refused: the others' callers are done.
          for (const w of waiting) {
            if (w.jobs.some((job) => error.failed.has(job))) w.reject(error);
            else w.resolve(undefined);
          }
          return;
        }
        // NOTE: one by one, so that a job the queue refuses fails its own caller only.
        for (const w of waiting)
          this.handOver(w.jobs, w.bulk).then(w.resolve, w.reject);
      },
    );
  }

  /**
   * `inner.enqueue`, with a synchronous throw turned into a rejection, counted in flight until
   * it is answered.
   */
  private handOver(jobs: AdapterJob[], bulk?: boolean): Promise<unknown> {
    let call: Promise<unknown>;
    try {
      call = Promise.resolve(this.inner.enqueue(jobs, bulk));
    } catch (error) {
      return Promise.reject(error);
    }
    this.inFlight++;
    call.then(this.answered, this.answered);
    return call;
  }

  private readonly answered = (): void => {
    this.inFlight--;
  };
}
