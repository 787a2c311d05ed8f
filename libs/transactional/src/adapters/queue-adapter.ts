import type { JobIdentity } from '../bull-job-ids';

/** The queue libraries a `TransactionAwareQueue` can wrap. */
export type QueueKind = 'bull' | 'bullmq';

/** A job as the adapter hands it to its queue. Internal. */
export interface AdapterJob {
  name: string;
  data: unknown;
  /** Options for the queue library (with the `jobId` to pass, if any). */
  opts: Record<string, any>;
  /** Repeatable (Bull): added alone, with `add()`. */
  repeat: boolean;
}

/** The part of an ioredis client the readiness check reads. */
export interface RedisClientLike {
  status: string;
  on(event: 'ready', listener: () => void): unknown;
}

/**
 * What `TransactionAwareQueue`, the outbox relay and the testing kit need from one queue
 * library: how it names a job before Redis is touched, how jobs are handed to it, and where its
 * Redis client is. One adapter per wrapped queue. Internal.
 */
export interface QueueAdapter {
  /** Which library the wrapped queue belongs to. */
  readonly kind: QueueKind;
  /** The name a job added without one gets. */
  readonly defaultJobName: string;
  /**
   * Names the job as the library will, before Redis is touched; throws a `TransactionalError`
   * for options the library would refuse after the commit (the job would be lost).
   */
  identify(name: string, data: unknown, opts: Record<string, any>): JobIdentity;
  /**
   * Hands jobs to the queue (after the commit, or outside a transaction): one `add()` per job
   * when there is one (or a repeatable one), else one `addBulk()`; always one `addBulk()` when
   * `bulk` is set and none is repeatable (the relay).
   */
  enqueue(jobs: AdapterJob[], bulk?: boolean): Promise<unknown>;
  /** The Redis client commands go through, if the queue has one (stand-ins have none). */
  client(): RedisClientLike | undefined;
  /**
   * Deletes, among `jobIds`, job hashes that hold no job and would swallow a re-add (see
   * `removeBullJobHusks`); resolves with those removed and those still locked.
   */
  removeHusks(
    jobIds: string[],
  ): Promise<{ removed: string[]; locked: string[] }>;
}

/**
 * An `enqueue()` that failed for some of its jobs only: the queue took the others. Internal.
 */
export class PartialEnqueueError extends Error {
  constructor(
    message: string,
    /** The jobs (the objects given to `enqueue()`) the queue did not take. */
    readonly failed: ReadonlySet<AdapterJob>,
  ) {
    super(message);
    this.name = 'PartialEnqueueError';
  }
}

/**
 * Base of the adapters that wrap another one and change only how jobs are handed over: the rest
 * is the inner adapter's. Internal.
 */
export abstract class WrappingAdapter implements QueueAdapter {
  constructor(protected readonly inner: QueueAdapter) {}

  get kind() {
    return this.inner.kind;
  }

  get defaultJobName() {
    return this.inner.defaultJobName;
  }

  identify(name: string, data: unknown, opts: Record<string, any>) {
    return this.inner.identify(name, data, opts);
  }

  abstract enqueue(jobs: AdapterJob[], bulk?: boolean): Promise<unknown>;

  client() {
    return this.inner.client();
  }

  removeHusks(jobIds: string[]) {
    return this.inner.removeHusks(jobIds);
  }
}

/**
 * `call(jobs)` (a queue library's hand-over of several jobs), with one bad job kept from taking
 * the others with it: when the call fails as a whole (BullMQ validates every job of an `addBulk`
 * before its MULTI, and both libraries serialise every job's data first: one job they refuse
 * fails them all) while the Redis `client` is connected, each job is handed over again on its
 * own. Resolves if all of them are then taken; otherwise rejects with a `PartialEnqueueError`
 * naming the jobs refused (with the error of the first). Handing a job over twice is safe: every
 * job of a multi-job call has an id (or is a repeatable job, whose schedule key is its id), and
 * the queue ignores an id it holds. The base adapters use it, under any diverter. Internal.
 */
export async function isolateRefusals(
  jobs: AdapterJob[],
  call: (jobs: AdapterJob[]) => Promise<unknown>,
  client: RedisClientLike | undefined,
): Promise<unknown> {
  try {
    return await call(jobs);
  } catch (error) {
    if (
      jobs.length < 2 ||
      error instanceof PartialEnqueueError ||
      (client !== undefined && client.status !== 'ready')
    )
      throw error;
  }
  const outcomes = await Promise.all(
    jobs.map((job) =>
      Promise.resolve()
        .then(() => call([job]))
        .then(
          () => undefined,
          (error: unknown) => ({ job, error }),
        ),
    ),
  );
  const refused = outcomes.filter((outcome) => outcome !== undefined);
  if (refused.length === 0) return undefined;
  const first = refused[0].error;
  throw new PartialEnqueueError(
    `${first instanceof Error ? first.message : String(first)} (${refused.length} of ` +
      `${jobs.length} job(s) refused; the others were taken)`,
    new Set(refused.map((outcome) => outcome.job)),
  );
}
