import { Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { OutboxRowKey, OutboxStore } from './outbox-store';

/**
 * Marks outbox rows dispatched after the fast path enqueued them, in batches and off the
 * request path: ids collected within `delayMs` go out in one UPDATE. A row whose marking is
 * lost (crash, database error) is re-dispatched by the relay with the same job id, which Bull
 * ignores while it still holds the job.
 */
export class DispatchMarker {
  private readonly logger = new Logger('TransactionalOutbox');
  private pending: OutboxRowKey[] = [];
  private timer?: NodeJS.Timeout;
  private inflight = new Set<Promise<void>>();
  /** Set by `close()`: the DataSource is about to close, marks are not sent any more. */
  private closed = false;

  constructor(
    private readonly store: OutboxStore,
    private readonly manager: () => EntityManager,
    private readonly delayMs: number,
  ) {}

  /**
   * Schedules the rows `keys` to be marked. After `close()` (an enqueue that landed during the
   * application's shutdown) it does nothing: the rows stay pending, and the next relay to take
   * them re-adds a job id Redis holds.
   */
  mark(keys: OutboxRowKey[]): void {
    if (this.closed) return;
    this.pending.push(...keys);
    this.timer ??= setTimeout(() => this.flush(), this.delayMs);
  }

  /** Marks everything collected so far now; resolves when all marking in progress is done. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.all([...this.inflight]);
  }

  /** Marks what was collected (`drain()`), then takes no more marks: the shutdown's last step. */
  async close(): Promise<void> {
    // NOTE: marks that came while the last ones were written are written too.
    while (this.pending.length > 0 || this.inflight.size > 0)
      await this.drain();
    this.closed = true;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const keys = this.pending;
    this.pending = [];
    const done: Promise<void> = this.store
      .markDispatched(this.manager(), keys)
      .catch((error: unknown) => {
        this.logger.warn(
          `could not mark ${keys.length} outbox row(s) dispatched (${String(error)}); ` +
            `the relay will dispatch them again with the same job ids`,
        );
      })
      .finally(() => this.inflight.delete(done));
    this.inflight.add(done);
  }
}
