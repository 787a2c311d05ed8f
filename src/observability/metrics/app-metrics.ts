import { getQueueToken } from '@nestjs/bull';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { Queue } from 'bull';
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
} from 'prom-client';
import { DataSource } from 'typeorm';
import {
  OutboxRelayStats,
  TransactionalMetrics,
  withTimeout,
} from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { OLDEST_DUE_SQL } from '../../deliveries/delivery-backlog';
import { DELIVERY_QUEUE } from '../../deliveries/delivery-queue';

/** Histogram buckets (seconds) of HTTP requests and webhook attempts. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Bull job states the queue depth gauge reports. */
const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed', 'paused'];

type Counters = Record<string, number>;

/**
 * The Prometheus metrics of one application (its own registry, so several applications in one
 * process never mix). Hot-path metrics (HTTP requests, deliveries, attempt latency) are
 * incremented where things happen; the library's counters, the outbox, the queue depth and the
 * disabled endpoints are read when Prometheus scrapes. No label holds an id or a URL: labels
 * are a route template, a method, a status code, a queue name, or an outcome from a fixed set.
 */
@Injectable()
export class AppMetrics {
  /** The registry `GET /metrics` renders. */
  readonly registry = new Registry();
  /** HTTP requests by method, route template and status code. */
  readonly httpRequests: Histogram<'method' | 'route' | 'status_code'>;
  /** Delivery jobs by how they ended. */
  readonly deliveries: Counter<'outcome'>;
  /** Webhook attempts (request sent) by result class, with their duration. */
  readonly attemptDuration: Histogram<'result'>;
  private readonly logger = new Logger(AppMetrics.name);

  constructor(
    transactional: TransactionalMetrics,
    dataSource: DataSource,
    moduleRef: ModuleRef,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    const registers = [this.registry];
    // NOTE: every gauge read from Postgres or Redis gives up after the health checks' timeout: a
    // paused or unreachable dependency (or a locked table) must not hang the whole scrape, whose
    // process and counter metrics are what an operator needs during that outage. A read still
    // running is shared, not started again: scrapes during a lock never pile up connections.
    const bounded = <T>(read: () => PromiseLike<T>) => {
      let running: Promise<T> | undefined;
      return () => {
        running ??= Promise.resolve(read()).finally(() => {
          running = undefined;
        });
        return withTimeout(running, config.healthCheckTimeoutMs);
      };
    };
    const outboxStats = bounded(() => transactional.outbox());
    const disabledEndpoints = bounded(
      (): Promise<{ n: string }[]> =>
        dataSource.query('SELECT count(*) AS n FROM endpoints WHERE disabled'),
    );
    const oldestDue = bounded(
      (): Promise<{ age_ms: number }[]> => dataSource.query(OLDEST_DUE_SQL),
    );
    const queueCounts = bounded(() =>
      // NOTE: looked up when scraped: the queue belongs to the deliveries module.
      moduleRef
        .get<Queue>(getQueueToken(DELIVERY_QUEUE), { strict: false })
        .getJobCounts(),
    );
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP requests by method, route template and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: BUCKETS,
      registers,
    });
    this.deliveries = new Counter({
      name: 'webhook_deliveries_total',
      help:
        'Delivery jobs by outcome: succeeded, retry_scheduled, failed, unchanged, ' +
        'unrecorded, skipped, deferred',
      labelNames: ['outcome'],
      registers,
    });
    this.attemptDuration = new Histogram({
      name: 'webhook_attempt_duration_seconds',
      help: 'Webhook requests by result (2xx, 3xx, 4xx, 5xx or the error class), with duration',
      labelNames: ['result'],
      buckets: BUCKETS,
      registers,
    });
    const snapshot = () => transactional.snapshot();
    this.total(
      'transactional_transactions_total',
      'Transactions by outcome (committed, rolled_back)',
      ['outcome'],
      () => {
        const { transactions: t } = snapshot();
        return [
          [{ outcome: 'committed' }, t.committed],
          [{ outcome: 'rolled_back' }, t.rolledBack],
        ];
      },
    );
    this.total(
      'transactional_savepoints_rolled_back_total',
      'NESTED scopes (savepoints) rolled back',
      [],
      () => [[{}, snapshot().transactions.savepointsRolledBack]],
    );
    this.total(
      'transactional_after_commit_failures_total',
      'After-commit and after-rollback steps that threw or timed out',
      [],
      () => [[{}, snapshot().transactions.hookFailures]],
    );
    const perQueue = (
      name: string,
      help: string,
      pick: (q: ReturnType<typeof snapshot>['queues'][number]) => number,
    ) =>
      this.total(name, help, ['queue'], () =>
        snapshot().queues.map((q) => [{ queue: q.queue }, pick(q)]),
      );
    perQueue(
      'transactional_jobs_deferred_total',
      'Jobs added inside a transaction (deferred to its commit)',
      (q) => q.deferred,
    );
    perQueue(
      'transactional_jobs_flushed_total',
      'Jobs handed to Bull (after commit, or at once outside a transaction)',
      (q) => q.enqueued,
    );
    perQueue(
      'transactional_jobs_dropped_on_rollback_total',
      'Deferred jobs dropped because their transaction or savepoint rolled back',
      (q) => q.droppedOnRollback,
    );
    perQueue(
      'transactional_jobs_flush_failed_total',
      'Jobs whose enqueue after commit failed (durable ones are left to the outbox relay)',
      (q) => q.failed,
    );
    perQueue(
      'transactional_jobs_left_to_relay_total',
      'Durable jobs the fast path gave up on; the outbox relay enqueues them',
      (q) => q.leftToRelay,
    );
    perQueue(
      'transactional_jobs_late_marked_total',
      'Durable jobs left to the relay whose enqueue landed after all (fastPathTimeoutMs shorter than Redis took)',
      (q) => q.lateMarked,
    );
    const relay = (name: string, help: string, key: keyof OutboxRelayStats) =>
      this.total(name, help, [], () => {
        const stats = snapshot().relay;
        return stats ? [[{}, stats[key]]] : [];
      });
    relay(
      'transactional_outbox_relay_polls_total',
      'Outbox relay polls in this process',
      'polls',
    );
    relay(
      'transactional_outbox_relay_batches_total',
      'Outbox relay polls that claimed rows (batches dispatched)',
      'batches',
    );
    relay(
      'transactional_outbox_relayed_jobs_total',
      'Jobs enqueued by the outbox relay (the fast path had not)',
      'relayed',
    );
    relay(
      'transactional_outbox_relay_failed_polls_total',
      'Outbox relay polls that failed (Postgres or Redis unreachable)',
      'failedPolls',
    );
    const pending = new Gauge({
      name: 'transactional_outbox_pending',
      help: 'Outbox rows not yet dispatched',
      registers,
    });
    const oldest = new Gauge({
      name: 'transactional_outbox_oldest_pending_age_seconds',
      help: 'Age of the oldest outbox row not yet dispatched (0 when none)',
      registers,
    });
    const logger = this.logger;
    new Gauge({
      name: 'transactional_outbox_failing',
      help: 'Pending outbox rows whose relay attempts failed',
      registers,
      async collect() {
        // NOTE: one query feeds the three outbox gauges.
        const stats = await outboxStats().catch((error: unknown) => {
          logger.warn(`metrics: outbox stats unavailable: ${String(error)}`);
          return null;
        });
        if (!stats) return;
        this.set(stats.failing);
        pending.set(stats.pending);
        oldest.set((stats.oldestPendingAgeMs ?? 0) / 1000);
      },
    });
    new Gauge({
      name: 'webhook_endpoints_disabled',
      help: 'Endpoints disabled (410 Gone, or failing for ENDPOINT_DISABLE_AFTER_MS)',
      registers,
      async collect() {
        const rows: { n: string }[] | null = await disabledEndpoints().catch(
          (error: unknown) => {
            logger.warn(
              `metrics: endpoint count unavailable: ${String(error)}`,
            );
            return null;
          },
        );
        if (rows) this.set(Number(rows[0].n));
      },
    });
    new Gauge({
      name: 'webhook_delivery_backlog_age_seconds',
      help:
        'Age of the oldest delivery that is due and not sent yet (0 when none): how far the ' +
        'workers are behind; GET /health/ready compares it with HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS',
      registers,
      async collect() {
        const rows: { age_ms: number }[] | null = await oldestDue().catch(
          (error: unknown) => {
            logger.warn(
              `metrics: delivery backlog unavailable: ${String(error)}`,
            );
            return null;
          },
        );
        if (rows)
          this.set(rows.length === 0 ? 0 : Math.max(0, rows[0].age_ms) / 1000);
      },
    });
    new Gauge({
      name: 'webhook_queue_jobs',
      help: 'Jobs in the delivery queue by Bull state',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = (await queueCounts().catch((error: unknown) => {
          logger.warn(`metrics: queue counts unavailable: ${String(error)}`);
          return null;
        })) as Counters | null;
        if (!counts) return;
        for (const state of QUEUE_STATES) {
          this.set({ state }, counts[state] ?? 0);
        }
      },
    });
  }

  /** A counter whose values are read from `read` when Prometheus scrapes. */
  private total(
    name: string,
    help: string,
    labelNames: string[],
    read: () => [Record<string, string>, number][],
  ): void {
    new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      },
    });
  }
}
