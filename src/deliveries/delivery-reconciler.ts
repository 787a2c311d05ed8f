import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  removeBullJobHusks,
  TransactionAwareQueue,
  TransactionHost,
} from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from './delivery-queue';
import { EndpointSlots } from './endpoint-slots';

/**
 * Deliveries that look lost: due `pending` ones past a grace period ($1 ms), and `sending`
 * ones whose lease expired; at most $2 of each. Two scans, each on its partial index (only
 * deliveries in flight are in them). The first page of a lap; {@link RECONCILE_AFTER_SQL}
 * reads the pages after it.
 */
export const RECONCILE_SQL = `(SELECT id, attempt_count, endpoint_id, next_attempt_at::text AS at
    FROM deliveries
    WHERE status = 'pending'
      AND next_attempt_at < now() - make_interval(secs => $1::float8 / 1000)
    ORDER BY next_attempt_at, id LIMIT $2)
  UNION ALL
  (SELECT id, attempt_count, endpoint_id, NULL AS at FROM deliveries
    WHERE status = 'sending' AND locked_until < now()
    ORDER BY locked_until LIMIT $2)`;

/**
 * The next page of due `pending` deliveries of a lap, after the last one read
 * (`next_attempt_at` $3 as text, to the microsecond, and id $4: the rows of one transaction
 * share their `next_attempt_at`). A row comparison on the partial index's column, so that the
 * scan starts past the rows already read (and past the index entries of the deliveries sent
 * since, which it would otherwise walk through again).
 */
export const RECONCILE_AFTER_SQL = `SELECT id, attempt_count, endpoint_id, next_attempt_at::text AS at
  FROM deliveries
  WHERE status = 'pending'
    AND next_attempt_at < now() - make_interval(secs => $1::float8 / 1000)
    AND (next_attempt_at, id) > ($3::timestamptz, $4::uuid)
  ORDER BY next_attempt_at, id LIMIT $2`;

/** How many pages a round reads at most while they keep finding lost deliveries. */
const MAX_PAGES_PER_ROUND = 20;

/** A row of {@link RECONCILE_SQL} or {@link RECONCILE_AFTER_SQL}; `at` is null for `sending`. */
interface ReconcileRow {
  id: string;
  attempt_count: number;
  endpoint_id: string;
  at: string | null;
}

/**
 * The deliveries among $1 that still look lost, read again after Redis said they have no job:
 * by primary key alone (a status predicate lets the planner pick a partial index), the
 * conditions of {@link RECONCILE_SQL} computed as a column.
 */
export const RECONCILE_RECHECK_SQL = `SELECT id, attempt_count,
    (status = 'pending' AND next_attempt_at < now() - make_interval(secs => $2::float8 / 1000))
      OR (status = 'sending' AND locked_until < now()) AS lost
  FROM deliveries WHERE id = ANY($1::uuid[])`;

/**
 * Postgres is the source of truth, Bull only schedules: deliveries that are due (or whose
 * sender's lease expired) for longer than a grace period, and whose job is neither in Bull nor
 * parked for an endpoint slot, have lost it (Redis flushed, a job removed by hand, a worker
 * that died while serving parked jobs) and are enqueued again; a delivery that only waits in
 * the queue is left alone. Parked jobs of an endpoint whose slot holders are all gone are
 * handed back to the queue. A duplicate that slips through is a no-op (the claim).
 *
 * The due deliveries are read in laps, a page (`limit` rows) at a time, in the order they
 * fell due: a round goes on from where the last one stopped, so that a delivery behind a
 * backlog longer than a page (which only waits in the queue) is reached too; and it reads
 * one more page for as long as a page finds lost deliveries (Redis lost the queue under a
 * backlog: all of it comes back in one round, not a page per interval), up to
 * {@link MAX_PAGES_PER_ROUND}. Under an overload where nothing is lost, a round costs one
 * page.
 */
@Injectable()
export class DeliveryReconciler implements OnApplicationBootstrap {
  private readonly logger = new Logger(DeliveryReconciler.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  /** Where the lap stopped: the last due `pending` delivery read, or none (a lap begins). */
  private cursor?: { at: string; id: string };

  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
    private readonly slots: EndpointSlots,
  ) {}

  onApplicationBootstrap() {
    if (this.config.role === 'api') return;
    this.timer = setInterval(() => {
      this.running ??= this.reconcile()
        .catch((error: unknown) => {
          this.logger.warn(`reconcile failed: ${String(error)}`);
          return 0;
        })
        .finally(() => (this.running = undefined));
    }, this.config.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Starts no new round; resolves once the round in progress (if any) is over. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** Enqueues the deliveries that look lost; resolves with how many. */
  async reconcile(limit = 1000): Promise<number> {
    const orphans = await this.slots.orphans();
    if (orphans.length > 0) {
      await this.queue.addBulk(
        orphans.map(({ jobId, data }) => ({
          data,
          opts: { ...DELIVERY_JOB_OPTIONS, jobId },
        })),
      );
      this.logger.warn(
        `handed ${orphans.length} parked job(s) of endpoints without a live slot back to the queue`,
      );
    }
    const graceMs = this.config.reconcileIntervalMs;
    let found = 0;
    for (let page = 0; page < MAX_PAGES_PER_ROUND; page++) {
      const { enqueued, pendingLost } = await this.reconcilePage(
        graceMs,
        limit,
      );
      found += enqueued;
      if (pendingLost === 0 || !this.cursor) break;
    }
    return found;
  }

  /**
   * Reads the next page of the lap (the first one with the lease-expired `sending`
   * deliveries), moves the cursor past it (or back to the start after a short page) and
   * enqueues what has lost its job; resolves with how many, and how many of them were
   * `pending` (the lap goes on while it finds those).
   */
  private async reconcilePage(
    graceMs: number,
    limit: number,
  ): Promise<{ enqueued: number; pendingLost: number }> {
    const cursor = this.cursor;
    const rows: ReconcileRow[] = await this.tx.manager.query(
      ...((cursor
        ? [RECONCILE_AFTER_SQL, [graceMs, limit, cursor.at, cursor.id]]
        : [RECONCILE_SQL, [graceMs, limit]]) as [string, unknown[]]),
    );
    const pending = rows.flatMap(({ id, at }) =>
      at === null ? [] : [{ id, at }],
    );
    this.cursor =
      pending.length < limit ? undefined : pending[pending.length - 1];
    if (rows.length === 0) return { enqueued: 0, pendingLost: 0 };
    const candidates = rows.map((row) => ({
      data: { deliveryId: row.id, endpointId: row.endpoint_id },
      opts: {
        ...DELIVERY_JOB_OPTIONS,
        jobId: deliveryJobId(row.id, row.attempt_count + 1),
      },
    }));
    const lost = await this.stillLost(
      await this.withoutJob(candidates),
      graceMs,
    );
    if (lost.length === 0) return { enqueued: 0, pendingLost: 0 };
    await this.queue.addBulk(lost);
    this.logger.log(
      `re-enqueued ${lost.length} delivery job(s) found due in Postgres without a job`,
    );
    const pendingIds = new Set(pending.map((row) => row.id));
    return {
      enqueued: lost.length,
      pendingLost: lost.filter((c) => pendingIds.has(c.data.deliveryId)).length,
    };
  }

  /**
   * The candidates that still look lost in Postgres, as they were scanned (the same attempt
   * count). A worker may have taken a delivery between the scan and the Redis check (a parked
   * job popped by a slot holder, then claimed): it has no job any more, and is not lost. Under
   * overload the oldest due deliveries, which the scan reads first, are those the workers are
   * taking; re-adding them cost a needless job cycle each. What remains is the short window
   * between a parked job's pop and its claim, where a duplicate job is a no-op (the claim).
   */
  private async stillLost<
    T extends { data: DeliveryJob; opts: { jobId: string } },
  >(candidates: T[], graceMs: number): Promise<T[]> {
    if (candidates.length === 0) return candidates;
    const rows: { id: string; attempt_count: number; lost: boolean }[] =
      await this.tx.manager.query(RECONCILE_RECHECK_SQL, [
        candidates.map((c) => c.data.deliveryId),
        graceMs,
      ]);
    const lost = new Set(
      rows
        .filter((row) => row.lost)
        .map((row) => deliveryJobId(row.id, row.attempt_count + 1)),
    );
    return candidates.filter((c) => lost.has(c.opts.jobId));
  }

  /**
   * The candidates whose job is neither in Bull (waiting, delayed, active) nor parked, in one
   * pipeline. NOTE: an empty job hash left by a Redis data loss would swallow the re-add
   * forever: such husks are removed, and their deliveries count as without a job.
   */
  private async withoutJob<
    T extends {
      data: DeliveryJob & { endpointId: string };
      opts: { jobId: string };
    },
  >(candidates: T[]): Promise<T[]> {
    const queue = this.queue.queue;
    const pipeline = queue.client.pipeline();
    for (const { data, opts } of candidates) {
      const key = queue.toKey(opts.jobId);
      pipeline.exists(key).hexists(key, 'data');
      this.slots.queueParkedCheck(pipeline, data.endpointId, opts.jobId);
    }
    const replies = ((await pipeline.exec()) ?? []).map(([error, value]) =>
      error ? null : value,
    );
    const state = candidates.map((_, i) => ({
      exists: replies[3 * i] === 1,
      hasData: replies[3 * i + 1] === 1,
      parked: replies[3 * i + 2] !== null,
    }));
    const husks = candidates.filter(
      (_, i) => state[i].exists && !state[i].hasData,
    );
    const { removed } = await removeBullJobHusks(
      queue,
      husks.map((c) => c.opts.jobId),
    );
    for (const jobId of removed) {
      this.logger.warn(`removed job ${jobId}: an empty hash Redis lost`);
    }
    const freed = new Set(removed);
    return candidates.filter(
      (c, i) =>
        !state[i].parked && (!state[i].exists || freed.has(c.opts.jobId)),
    );
  }
}
