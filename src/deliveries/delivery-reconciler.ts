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

/**
 * Deliveries that look lost: due `pending` ones past a grace period ($1 ms), and `sending`
 * ones whose lease expired; at most $2 of each. Two scans, each on its partial index (only
 * deliveries in flight are in them).
 */
export const RECONCILE_SQL = `(SELECT id, attempt_count FROM deliveries
    WHERE status = 'pending'
      AND next_attempt_at < now() - make_interval(secs => $1::float8 / 1000)
    ORDER BY next_attempt_at LIMIT $2)
  UNION ALL
  (SELECT id, attempt_count FROM deliveries
    WHERE status = 'sending' AND locked_until < now()
    ORDER BY locked_until LIMIT $2)`;

/**
 * Postgres is the source of truth, Bull only schedules: deliveries that are due (or whose
 * sender's lease expired) for longer than a grace period have lost their job (Redis flushed,
 * a job removed by hand) and are enqueued again. Job ids are deterministic, so a job that
 * still exists is not duplicated; a duplicate that slips through is a no-op (the claim).
 */
@Injectable()
export class DeliveryReconciler implements OnApplicationBootstrap {
  private readonly logger = new Logger(DeliveryReconciler.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;

  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
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
    const graceMs = this.config.reconcileIntervalMs;
    const rows: { id: string; attempt_count: number }[] =
      await this.tx.manager.query(RECONCILE_SQL, [graceMs, limit]);
    if (rows.length === 0) return 0;
    const jobs = rows.map((row) => ({
      data: { deliveryId: row.id },
      opts: {
        ...DELIVERY_JOB_OPTIONS,
        jobId: deliveryJobId(row.id, row.attempt_count + 1),
      },
    }));
    // NOTE: an empty job hash left by a Redis data loss would swallow the re-add forever.
    const { removed } = await removeBullJobHusks(
      this.queue.queue,
      jobs.map((job) => job.opts.jobId),
    );
    for (const jobId of removed) {
      this.logger.warn(`removed job ${jobId}: an empty hash Redis lost`);
    }
    await this.queue.addBulk(jobs);
    this.logger.log(
      `re-enqueued ${rows.length} delivery job(s) found due in Postgres`,
    );
    return rows.length;
  }
}
