import { Logger } from '@nestjs/common';
import { randomUUID } from 'crypto';
import type { JobOptions, Queue } from 'bull';
import { CoalescingAdapter } from './adapters/coalescing-adapter';
import { DivertingAdapter } from './adapters/diverting-adapter';
import { jsonCopy } from './job-data';
import { createQueueAdapter } from './adapters/queue-adapter.factory';
import { PartialEnqueueError, QueueAdapter } from './adapters/queue-adapter';
import { NoTransactionError } from './errors/no-transaction.error';
import { TransactionalError } from './errors/transactional.error';
import type { OutboxRowKey } from './outbox/outbox-store';
import type { QueueOutbox } from './outbox/queue-outbox';
import { assertRedisReady, watchRedisReadiness } from './redis-readiness';
import type {
  HookFrame,
  TransactionContext,
  TransactionHook,
  TransactionScope,
} from './transaction-context';
import { transactionStorage } from './transaction-storage';
import { DEFAULT_CONNECTION_NAME } from './transactional.constants';
import {
  LibrarySpan,
  endSpan,
  tracingOn,
  startSpan,
} from './observability/tracing';
import type {
  BulkJob,
  JobDiverter,
  NoTransactionPolicy,
  TransactionAwareJobOptions,
  TransactionAwareQueueOptions,
} from './transactional.interfaces';

type PreparedJob<T> = {
  name: string;
  data: T;
  /** Options for Bull or BullMQ (with the `jobId` to pass, if any). */
  opts: JobOptions & Record<string, any>;
  /** What `add()` resolves with: the Bull job id, or a repeatable job's schedule key. */
  id: string;
  /** Repeatable: Bull derives the job ids, and the job is added alone. */
  repeat: boolean;
  /** Also written to the outbox (durable mode). */
  durable: boolean;
  /**
   * Outbox row id, unique to this add: the job id when it was generated, else a random one (the
   * job id travels in `opts`).
   */
  rowId: string;
};

/** Span attribute that says how a deferred enqueue ended: `enqueued`, `failed`, `dropped`. */
const OUTCOME = 'messaging.outcome';

/**
 * The jobs one scope frame deferred to one queue, flushed by one after-commit step. A class, so
 * that deferring allocates one object rather than an object and three closures per batch.
 */
class PendingBatch<T> implements TransactionHook {
  constructor(
    /** The queue that deferred the jobs. */
    readonly owner: TransactionAwareQueue<T, any>,
    /** The frame they were deferred in. */
    readonly frame: HookFrame,
    readonly jobs: PreparedJob<T>[],
    /** The transaction the jobs were added in. */
    readonly tx: TransactionContext,
    /** The batch's span, from its first deferral to its flush or drop (with OpenTelemetry). */
    readonly span: LibrarySpan | undefined,
  ) {}

  run(): Promise<void> {
    return this.owner.flushBatch(this);
  }

  dropped(): void {
    this.owner.stats.droppedOnRollback += this.jobs.length;
    this.span?.setAttribute('messaging.batch.message_count', this.jobs.length);
    endSpan(this.span, OUTCOME, 'dropped');
  }

  describe(): string {
    return `enqueue ${this.jobs.length} job(s) to queue "${this.owner.name}" (job ids ${ids(this.jobs)})`;
  }
}

/** Counters of one queue, for health checks and metrics. */
export interface TransactionAwareQueueStats {
  /** Jobs deferred inside transactions. */
  deferred: number;
  /** Jobs handed to Bull (after commit, or directly outside a transaction). */
  enqueued: number;
  /**
   * Jobs whose after-commit enqueue failed (logged with their ids), or was refused at once
   * because the queue's Redis client was not connected.
   */
  failed: number;
  /**
   * Durable jobs the fast path gave up on after the commit (failed, refused, too slow, or too
   * close to the relay's turn): their outbox rows are left to the relay. An enqueue that still
   * lands later marks them dispatched (counted in `lateMarked` too).
   */
  leftToRelay: number;
  /**
   * Durable jobs left to the relay whose enqueue landed after all and marked their rows
   * dispatched (the relay did not enqueue them again, unless it had taken the rows already).
   * Often more than a few: `fastPathTimeoutMs` is shorter than Redis takes.
   */
  lateMarked: number;
  /**
   * Deferred jobs dropped because their transaction, or the NESTED scope they were added in,
   * rolled back (never sent to Redis).
   */
  droppedOnRollback: number;
}

/**
 * A Bull queue whose `add()` and `addBulk()` respect the caller's transaction. Inside a
 * transaction they resolve at once with the job id (generated up front, passed to Bull as
 * `jobId`) and touch Redis only after the outermost commit; a rollback drops the jobs, and so
 * does the rollback of the NESTED scope they were added in. Outside a transaction the queue's
 * `whenNoTransaction` policy applies. Inject with `@InjectTransactionAwareQueue(name)`.
 *
 * Jobs end up in Bull as a plain `add()` would put them: the same job ids (a limiter
 * `groupKey` appends the group), the same repeat schedules (a repeatable job gets no generated
 * `jobId`, which Bull would put into the schedule's key), the queue's `defaultJobOptions`.
 * A job id is added once: Bull ignores a job id it holds (the first job to reach Redis wins), in
 * durable mode too, where every add writes its own outbox row and no transaction waits for
 * another that added the same job id.
 * After the commit, a flush whose Redis client is not connected fails at once (logged,
 * counted in `stats.failed`) instead of waiting in the client's offline queue; durable jobs
 * are then left to the outbox relay, as they are when Redis does not take them within the
 * outbox's `fastPathTimeoutMs` or before their rows become eligible for the relay.
 *
 * Over a BullMQ `Queue` (picked from the queue, or `registerQueue({ adapter: 'bullmq' })`) the
 * same holds with BullMQ's rules: `add(name, data, opts)` (or `add(data, opts)`, named
 * `'__default__'`), a generated `jobId` (a UUID) unless the caller gave one, a custom id
 * BullMQ would refuse (an integer, `'0'`, a `:`) rejected inside the transaction, and
 * `opts.repeat` refused (use `queue.upsertJobScheduler()`). Type it
 * `TransactionAwareQueue<Data, Queue<Data>>` with BullMQ's `Queue`.
 */
export class TransactionAwareQueue<T = unknown, Q extends object = Queue<T>> {
  /** Counters since start-up. */
  readonly stats: TransactionAwareQueueStats = {
    deferred: 0,
    enqueued: 0,
    failed: 0,
    leftToRelay: 0,
    lateMarked: 0,
    droppedOnRollback: 0,
  };
  private readonly logger: Logger;
  private readonly connectionName: string;
  private readonly policy: NoTransactionPolicy;

  private bullQueue?: Q;
  private queueAdapter?: QueueAdapter;

  constructor(
    private readonly options: TransactionAwareQueueOptions,
    /** Returns the Bull or BullMQ queue; called once, on first use (the module resolves it at init). */
    private readonly resolveQueue: () => Q,
    /** The connection's outbox; required when any job is durable. */
    private readonly outbox?: QueueOutbox,
    /** Returns the queue's `JobDiverter` (`options.diverter`); called once, on first use. */
    private readonly resolveDiverter?: () => JobDiverter,
    /**
     * The transaction runner of the queue's application: a transaction another application of
     * the process opened is not one of this queue's (see `submit`). Any, when not given.
     */
    private readonly runner?: object,
  ) {
    this.name = options.name;
    this.durable = options.durable ?? false;
    this.connectionName = options.connectionName ?? DEFAULT_CONNECTION_NAME;
    this.policy = options.whenNoTransaction ?? 'enqueue';
    this.logger = new Logger(`TransactionAwareQueue:${options.name}`);
  }

  /** The Bull queue name. */
  readonly name: string;

  /** Whether jobs added in a transaction also go to the outbox unless a call says otherwise. */
  readonly durable: boolean;

  /** Connection whose transactions this queue defers to. */
  get connection(): string {
    return this.connectionName;
  }

  /** The wrapped Bull (or BullMQ) queue, for everything but adding jobs (processing, counts, events). */
  get queue(): Q {
    this.bullQueue ??= this.resolveQueue();
    return this.bullQueue;
  }

  /**
   * How jobs reach the wrapped queue: Bull's or BullMQ's rules, picked by
   * `TransactionAwareQueueOptions.adapter` or from the queue itself. Internal.
   */
  get adapter(): QueueAdapter {
    if (!this.queueAdapter) {
      const adapter = createQueueAdapter(
        this.queue,
        this.options.adapter,
        this.name,
      );
      const diverted = this.resolveDiverter
        ? new DivertingAdapter(adapter, this.resolveDiverter(), this.name)
        : adapter;
      this.queueAdapter =
        this.options.coalesceEnqueues === true
          ? new CoalescingAdapter(diverted)
          : diverted;
    }
    return this.queueAdapter;
  }

  /** Resolves the Bull queue at start-up, so that a missing registration fails fast. */
  onModuleInit(): void {
    watchRedisReadiness(this.adapter.client());
  }

  /**
   * Adds a job; resolves with its id. Same arguments as Bull's `Queue.add`, plus
   * `opts.durable` to override the queue's durable mode for this job.
   *
   * The id is the one Bull gives the job: `opts.jobId`, or a random UUID, followed by `:` and
   * the group when the queue's limiter has a `groupKey`. Bull ignores a job id it holds (the
   * first job to reach Redis wins), in durable mode as well.
   * A repeatable job (`opts.repeat`, or the queue's `defaultJobOptions.repeat`) has no single
   * job id: `add()` resolves with the key of its schedule, as `queue.getRepeatableJobs()` lists
   * it and `queue.removeRepeatableByKey()` takes it; adding the same schedule again changes
   * nothing, as with Bull. With `opts.debounce`, Bull may keep the debounced job instead of
   * adding this one; the id is then that of a job Bull did not add (Bull's own `add()` answers
   * with the debounced job, which is only known once Redis has been asked).
   */
  add(data: T, opts?: TransactionAwareJobOptions<Q>): Promise<string>;
  /** Adds a named job; resolves with its id. Same arguments as Bull's `Queue.add`. */
  add(
    name: string,
    data: T,
    opts?: TransactionAwareJobOptions<Q>,
  ): Promise<string>;
  add(
    nameOrData: string | T,
    dataOrOpts?: T | TransactionAwareJobOptions<Q>,
    opts?: TransactionAwareJobOptions<Q>,
  ): Promise<string> {
    try {
      // NOTE: Bull's own rule: a string first argument is the job name.
      const job =
        typeof nameOrData === 'string'
          ? this.prepare({ name: nameOrData, data: dataOrOpts as T, opts })
          : this.prepare({
              data: nameOrData,
              opts: dataOrOpts as TransactionAwareJobOptions<Q> | undefined,
            });
      const submitted = this.submit([job]);
      return submitted ? submitted.then(() => job.id) : Promise.resolve(job.id);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Adds several jobs; resolves with their ids (or schedule keys, see `add()`), in order. Same
   * argument as Bull's `addBulk`.
   */
  async addBulk(jobs: BulkJob<T, Q>[]): Promise<string[]> {
    // NOTE: nothing to defer (an empty batch failed after the commit, in the log).
    if (jobs.length === 0) return [];
    const prepared = jobs.map((job) => this.prepare(job));
    // NOTE: read first: the batch may take `prepared` as its list, and later adds extend it.
    const ids = prepared.map((job) => job.id);
    await this.submit(prepared);
    return ids;
  }

  private prepare(job: BulkJob<T, Q>): PreparedJob<T> {
    const given = job.opts as TransactionAwareJobOptions | undefined;
    let durable: boolean | undefined;
    let opts: JobOptions & Record<string, any> = {};
    if (given) ({ durable, ...opts } = given);
    copyNestedOptions(opts);
    const name = job.name ?? this.adapter.defaultJobName;
    const isDurable = durable ?? this.durable;
    // NOTE: a copy of the data as it is now, as a plain add() writes it to Redis before it
    // resolves: the caller may change (or reuse) the object before the commit, and the job
    // must carry what add() was given (and the outbox row, the same data).
    const data = snapshot(this.name, name, job.data);
    const identity = this.adapter.identify(name, data, opts);
    assertSerialisableOptions(this.name, name, identity.opts);
    return {
      name,
      data,
      opts: identity.opts,
      id: identity.id,
      repeat: identity.repeat,
      durable: isDurable,
      // NOTE: a job id the caller chose (or the queue's defaultJobOptions) may be added by
      // several transactions, so it is not the row's key: a unique key would make a transaction
      // wait for any open transaction that wrote the same id (forever, for a REQUIRES_NEW inside
      // that transaction). Bull de-duplicates by job id, as without the outbox. A generated job
      // id is fresh, hence unique; a repeatable job's schedule key is not.
      rowId:
        identity.generated && !identity.repeat ? identity.id : randomUUID(),
    };
  }

  /**
   * Defers `jobs` in the caller's transaction (`undefined`: done, nothing to wait for) or, outside
   * one, applies the `whenNoTransaction` policy. Throws what it refuses at once.
   */
  private submit(jobs: PreparedJob<T>[]): Promise<void> | undefined {
    const scope = transactionStorage.open(
      this.connectionName,
      `TransactionAwareQueue("${this.name}").add()`,
      this.runner,
    );
    if (scope) {
      if (!jobs.some((job) => job.durable)) {
        this.defer(scope, jobs);
        return undefined;
      }
      return this.submitDurable(scope, jobs);
    }
    if (this.policy === 'throw') {
      throw new NoTransactionError(this.name, this.connectionName);
    }
    if (this.policy === 'warn') {
      this.logger.warn(
        `add() outside a transaction on connection "${this.connectionName}": enqueued at ` +
          `once (job ids ${ids(jobs)}). Call it from a @Transactional() scope, or register ` +
          `the queue with whenNoTransaction: 'enqueue' if this is intended.`,
      );
    }
    // NOTE: no transaction of this queue's connection: a transaction of another connection may
    // be open here, and the plain-queue detector would take this enqueue for a plain add() in it.
    return transactionStorage.runDetached(() => this.enqueue(jobs));
  }

  /** Writes the outbox rows of the durable ones among `jobs`, then defers all of them. */
  private submitDurable(
    scope: TransactionScope,
    jobs: PreparedJob<T>[],
  ): Promise<void> | undefined {
    // NOTE: the outbox rows first: an add() that rejects must defer none of its jobs.
    const written = this.writeOutbox(
      scope,
      jobs.filter((job) => job.durable),
    );
    if (!written) {
      this.defer(scope, jobs);
      return undefined;
    }
    return written.then(() => {
      // NOTE: the rows were written in the transaction while the scope was open: if the scope
      // ended meanwhile (an add() it did not await), they follow the transaction's outcome and
      // the relay enqueues them if it committed; only the fast path is skipped.
      if (!scope.frame.closed) this.defer(scope, jobs);
    });
  }

  /**
   * Writes durable jobs to the outbox in the caller's transaction, one row per job (even for a
   * job id added before: Bull keeps the first job of an id it receives, as without the outbox),
   * or holds them for the COMMIT (`undefined`; see `OutboxWriter`).
   */
  private writeOutbox(
    scope: TransactionScope,
    jobs: PreparedJob<T>[],
  ): Promise<void> | undefined {
    if (!this.outbox) {
      throw new TransactionalError(
        `Queue "${this.name}" was asked for a durable job, but no outbox is configured. ` +
          `Pass TransactionalModule.forRoot({ outbox: {} }) and add createOutboxMigration() ` +
          `to your migrations.`,
      );
    }
    return this.outbox.writer.write(
      scope.tx,
      jobs.map((job) => ({
        queue: this.name,
        id: job.rowId,
        jobName: job.name,
        data: job.data,
        opts: job.opts as Record<string, unknown>,
      })),
      scope.frame,
    );
  }

  private defer(
    scope: TransactionScope,
    jobs: PreparedJob<T>[],
  ): PendingBatch<T> {
    this.stats.deferred += jobs.length;
    this.onDeferred(jobs);
    const { frame } = scope;
    // NOTE: a batch is extended only while it is the frame's last step, so that jobs and
    // other after-commit hooks keep the order in which they were registered.
    const open = frame.afterCommit[frame.afterCommit.length - 1];
    if (
      open instanceof PendingBatch &&
      open.owner === this &&
      open.frame === frame
    ) {
      open.jobs.push(...jobs);
      return open as PendingBatch<T>;
    }
    const batch = new PendingBatch<T>(
      this,
      frame,
      // NOTE: every caller passes a list of its own, which it no longer changes.
      jobs,
      scope.tx,
      // NOTE: without OpenTelemetry, no span name or attributes are built per batch.
      tracingOn()
        ? startSpan(`${this.name} enqueue`, 'producer', {
            'messaging.system': 'bull',
            'messaging.destination.name': this.name,
            'messaging.operation.type': 'send',
          })
        : undefined,
    );
    frame.afterCommit.push(batch);
    return batch;
  }

  /**
   * Called with the jobs `add()` / `addBulk()` has just deferred in the caller's scope (after
   * every check passed), synchronously in that scope. Does nothing; the testing kit's queue
   * records its deferred jobs here. Internal.
   */
  protected onDeferred(
    jobs: readonly { id: string; name: string; data: T; opts: JobOptions }[],
  ): void {
    void jobs;
  }

  /**
   * Enqueues a batch after the commit: its durable jobs within the fast path's budget, the
   * others for as long as the after-commit step may take. Rejects (and the runner logs it) if
   * either part fails. Internal: the batch's after-commit step.
   */
  flushBatch(batch: PendingBatch<T>): Promise<void> {
    if (!batch.span) {
      const { jobs } = batch;
      const durable = jobs[0].durable;
      if (jobs.every((job) => job.durable === durable)) {
        return durable ? this.sendDurable(jobs, batch.tx) : this.send(jobs);
      }
    }
    return this.flushRuns(batch);
  }

  /** `flush` of a batch with durable jobs, or traced: run by run, then the span ends. */
  private async flushRuns(batch: PendingBatch<T>): Promise<void> {
    // NOTE: runs of plain and durable jobs go out one after the other, in registration order,
    // so that of two jobs with one id Bull keeps the first, as it would without the outbox.
    let failure: { error: unknown } | undefined;
    let start = 0;
    while (start < batch.jobs.length) {
      const durable = batch.jobs[start].durable;
      let end = start + 1;
      while (end < batch.jobs.length && batch.jobs[end].durable === durable)
        end++;
      const run = batch.jobs.slice(start, end);
      start = end;
      try {
        await (durable ? this.sendDurable(run, batch.tx) : this.send(run));
      } catch (error) {
        failure ??= { error };
      }
    }
    batch.span?.setAttribute(
      'messaging.batch.message_count',
      batch.jobs.length,
    );
    endSpan(
      batch.span,
      OUTCOME,
      failure ? 'failed' : 'enqueued',
      failure?.error,
    );
    if (failure) throw failure.error;
  }

  /** Hands jobs to Bull, refusing at once while the Redis client is not connected. */
  private send(jobs: PreparedJob<T>[]): Promise<void> {
    try {
      assertRedisReady(this.adapter.client(), this.name);
    } catch (error) {
      this.stats.failed += jobs.length;
      return Promise.reject(error);
    }
    let enqueuing;
    try {
      enqueuing = this.adapter.enqueue(jobs);
    } catch (error) {
      this.stats.failed += jobs.length;
      return Promise.reject(error);
    }
    // NOTE: a job the queue refuses fails alone (PartialEnqueueError); the others are taken.
    return enqueuing.then(
      () => {
        this.stats.enqueued += jobs.length;
      },
      (error: unknown) => {
        const failed =
          error instanceof PartialEnqueueError
            ? error.failed.size
            : jobs.length;
        this.stats.failed += failed;
        this.stats.enqueued += jobs.length - failed;
        throw error;
      },
    );
  }

  /**
   * The fast path of durable jobs: enqueues them and marks their rows dispatched if Redis takes
   * them within the budget (the outbox's `fastPathTimeoutMs`, and never past the moment the
   * relay may take the rows); otherwise leaves the rows to the relay. An enqueue that lands
   * after the budget marks its rows all the same, so that a relay that has not taken them yet
   * does not enqueue the jobs again.
   */
  private sendDurable(
    jobs: PreparedJob<T>[],
    tx: TransactionContext,
  ): Promise<void> {
    const outbox = this.outbox!;
    const budget = Math.floor(outbox.writer.fastPathBudgetMs(tx));
    if (budget <= 0) {
      return Promise.reject(
        this.leaveToRelay(
          jobs,
          new Error(
            'no time left before the outbox relay may take the rows (the transaction, or the ' +
              'after-commit steps before this one, took most of the grace period)',
          ),
        ),
      );
    }
    /**
     * Marks the rows of the jobs Redis took (all, or those a partial failure did not refuse);
     * returns how many.
     */
    const markTaken = (refused?: Set<PreparedJob<T>>): number => {
      const taken = jobs.filter((job) => !refused?.has(job));
      outbox.marker.mark(taken.map((job) => this.rowKey(job)));
      return taken.length;
    };
    return new Promise<void>((resolve, reject) => {
      let pending = true;
      const deadline = outbox.writer.startDeadline(budget, () => {
        if (!pending) return;
        pending = false;
        reject(
          this.leaveToRelay(
            jobs,
            new Error(`Redis did not take the job(s) within ${budget} ms`),
          ),
        );
      });
      /** The jobs Redis did not take: those of a partial failure, else all. */
      const refusedBy = (error: unknown): PreparedJob<T>[] =>
        error instanceof PartialEnqueueError
          ? jobs.filter((job) => error.failed.has(job))
          : jobs;
      this.send(jobs).then(
        () => {
          if (!pending) {
            // NOTE: an enqueue that lands after the fast path gave up is marked all the same:
            // its jobs are in Redis, and a relay that has not taken the rows yet leaves them
            // (one that has re-adds the job id Redis holds, and its own marking finds them done).
            this.stats.lateMarked += markTaken();
            return;
          }
          pending = false;
          deadline.cancel();
          markTaken();
          resolve();
        },
        (error: unknown) => {
          const refused = refusedBy(error);
          if (!pending) {
            if (refused.length < jobs.length)
              this.stats.lateMarked += markTaken(new Set(refused));
            return;
          }
          pending = false;
          deadline.cancel();
          if (refused.length < jobs.length) {
            // NOTE: the jobs the queue took are marked; the relay retries only the others.
            markTaken(new Set(refused));
            reject(this.leaveToRelay(refused, error));
            return;
          }
          reject(this.leaveToRelay(jobs, error));
        },
      );
    });
  }

  /** Counts `jobs` as left to the relay; the error to report for them. */
  private leaveToRelay(jobs: PreparedJob<T>[], error: unknown): Error {
    this.stats.leftToRelay += jobs.length;
    return leftToRelay(error);
  }

  private rowKey(job: PreparedJob<T>): OutboxRowKey {
    return { queue: this.name, id: job.rowId };
  }

  private enqueue(jobs: PreparedJob<T>[]): Promise<void> {
    let enqueuing;
    try {
      enqueuing = this.adapter.enqueue(jobs);
    } catch (error) {
      return Promise.reject(error);
    }
    return enqueuing.then(() => {
      this.stats.enqueued += jobs.length;
    });
  }
}

/** `error`, said to leave the durable jobs to the relay (same name, for the log line). */
function leftToRelay(error: unknown): Error {
  const cause = error instanceof Error ? error : new Error(String(error));
  const wrapped = new Error(
    `${cause.message}; the outbox relay will enqueue the durable job(s)`,
  );
  wrapped.name = cause.name;
  return wrapped;
}

/**
 * The job's data as it is now (see `jsonCopy`); a `TransactionalError`, inside the transaction,
 * for data the queue library cannot write (`JSON.stringify` throws: a `BigInt`, a cycle): after
 * the commit the job would be lost, and every job of its batch with it.
 */
function snapshot<T>(queue: string, name: string, data: T): T {
  try {
    return jsonCopy(data);
  } catch (error) {
    throw new TransactionalError(
      `Queue "${queue}": the data of job "${name}" cannot be written as JSON ` +
        `(${error instanceof Error ? error.message : String(error)}); the queue would refuse it ` +
        `after the commit. Pass plain JSON data (no BigInt, no cycles); the job was not added.`,
    );
  }
}

/**
 * Replaces, in `opts` (a copy the caller does not hold), each object value (`backoff`, `repeat`,
 * `parent`, ...) by a copy taken now, as the data is: the job reaches Redis after the commit, and
 * the caller may change those objects meanwhile. `structuredClone` keeps `Date`s (a schedule's
 * `startDate`) as they are; a value it cannot copy is left as it is.
 */
function copyNestedOptions(opts: Record<string, unknown>): void {
  for (const key in opts) {
    const value = opts[key];
    if (value === null || typeof value !== 'object') continue;
    try {
      opts[key] = structuredClone(value);
    } catch {
      // NOTE: a value with a function (no option of Bull's or BullMQ's has one) stays shared.
    }
  }
}

/**
 * Throws a `TransactionalError` inside the transaction for job options the queue library cannot
 * write as JSON (a `BigInt` delay, a cycle): after the commit the job would be lost.
 */
function assertSerialisableOptions(
  queue: string,
  name: string,
  opts: unknown,
): void {
  try {
    JSON.stringify(opts);
  } catch (error) {
    throw new TransactionalError(
      `Queue "${queue}": the options of job "${name}" cannot be written as JSON ` +
        `(${error instanceof Error ? error.message : String(error)}); the queue would refuse it ` +
        `after the commit. Pass plain JSON options (no BigInt, no cycles); the job was not added.`,
    );
  }
}

function ids(jobs: PreparedJob<unknown>[]): string {
  return jobs.map((job) => job.id).join(', ');
}
