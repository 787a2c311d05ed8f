import { Injectable, Optional } from '@nestjs/common';
import type { OutboxRelayStats } from '../outbox/outbox-relay.service';
import type { OutboxStats } from '../outbox/outbox-store';
import { TransactionalOutbox } from '../outbox/transactional-outbox';
import { QueueRegistry } from '../queue-registry';
import type { TransactionAwareQueueStats } from '../transaction-aware-queue';
import {
  TransactionRunner,
  TransactionRunnerStats,
} from '../transaction-runner';
import { DEFAULT_CONNECTION_NAME } from '../transactional.constants';

/** The counters of one transaction-aware queue, with its name. */
export interface QueueMetrics extends TransactionAwareQueueStats {
  /** The Bull queue name. */
  queue: string;
}

/**
 * Every counter of the library in this process, since start-up: monotonic totals a metrics
 * exporter publishes as counters (Prometheus `_total`), never reset.
 */
export interface TransactionalMetricsSnapshot {
  /** Transactions committed and rolled back, savepoints rolled back, after-commit failures. */
  transactions: TransactionRunnerStats;
  /** One entry per `registerQueue()`d queue: jobs deferred, enqueued, failed, dropped. */
  queues: QueueMetrics[];
  /** The outbox relays' polls, batches and relayed rows; `null` without an outbox. */
  relay: OutboxRelayStats | null;
}

/**
 * Read-only access to the library's counters, for an application to publish with the metrics
 * library of its choice (the library itself depends on none). Inject it anywhere once
 * `TransactionalModule.forRoot()` is imported.
 *
 * The counters are plain numbers the library increments synchronously where things happen,
 * so reading them costs nothing on the request path: publish them from a scrape-time
 * callback. With prom-client:
 *
 * ```ts
 * new Counter({
 *   name: 'transactions_total',
 *   help: 'Transactions by outcome',
 *   labelNames: ['outcome'],
 *   registers: [registry],
 *   collect() {
 *     const { transactions } = metrics.snapshot();
 *     this.reset();
 *     this.inc({ outcome: 'committed' }, transactions.committed);
 *     this.inc({ outcome: 'rolled_back' }, transactions.rolledBack);
 *   },
 * });
 * ```
 *
 * `outbox()` reads the outbox table (one aggregate query): call it at scrape time, not per
 * request.
 */
@Injectable()
export class TransactionalMetrics {
  constructor(
    private readonly runner: TransactionRunner,
    private readonly registry: QueueRegistry,
    @Optional() private readonly transactionalOutbox?: TransactionalOutbox,
  ) {}

  /** A copy of every counter now. */
  snapshot(): TransactionalMetricsSnapshot {
    const queues: QueueMetrics[] = [];
    for (const queue of this.registry.all()) {
      queues.push({ queue: queue.name, ...queue.stats });
    }
    return {
      transactions: { ...this.runner.stats },
      queues,
      relay: this.transactionalOutbox?.relayStats ?? null,
    };
  }

  /**
   * What the outbox of `connectionName` holds now (pending rows, the oldest pending row's age,
   * failing rows), or `null` when the module has no outbox. One query.
   */
  async outbox(
    connectionName = DEFAULT_CONNECTION_NAME,
  ): Promise<OutboxStats | null> {
    return this.transactionalOutbox
      ? this.transactionalOutbox.stats(connectionName)
      : null;
  }
}
