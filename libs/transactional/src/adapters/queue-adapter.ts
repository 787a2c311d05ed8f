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
