import { performance } from 'perf_hooks';
import type { TransactionContext } from '../transaction-context';
import type { OutboxRow, OutboxRowKey, OutboxStore } from './outbox-store';
import type { ResolvedOutboxOptions } from './outbox.options';

/**
 * The fast path stops this long before the relay may take its rows, on top of the marking
 * delay: the time the marking UPDATE needs to reach Postgres.
 */
const MARK_MARGIN_MS = 50;

/** What one transaction wrote to the outbox of one connection. */
interface TransactionWrites {
  /** Rows written (some may have been rolled back with a savepoint since). */
  readonly keys: OutboxRowKey[];
  /** When the first INSERT was sent (`performance.now()`). */
  firstWriteAt: number;
  /** When the before-commit UPDATE was sent, if it ran. */
  postponedAt?: number;
}

/**
 * Writes durable jobs to the outbox in the caller's transaction and keeps their rows away from
 * the relay until the fast path is done with them. A row is eligible `graceMs` after its INSERT;
 * when the transaction has been open for more than half of that, one UPDATE right before COMMIT
 * (a before-commit step, registered once per transaction) counts the grace period from the
 * commit instead. The fast path gets the time that is left (`fastPathBudgetMs`). Internal.
 */
export class OutboxWriter {
  private readonly transactions = new WeakMap<
    TransactionContext,
    TransactionWrites
  >();

  constructor(
    private readonly store: OutboxStore,
    private readonly options: ResolvedOutboxOptions,
  ) {}

  /** Inserts `rows` in `tx` (see `OutboxStore.insert`). */
  async write(tx: TransactionContext, rows: OutboxRow[]): Promise<void> {
    let writes = this.transactions.get(tx);
    if (!writes) {
      writes = { keys: [], firstWriteAt: performance.now() };
      this.transactions.set(tx, writes);
      const registered = writes;
      tx.beforeCommit.push({
        run: () => this.postpone(tx, registered),
        describe: () =>
          `count the outbox grace period of ${registered.keys.length} row(s) from the commit`,
      });
    }
    await this.store.insert(tx.manager, rows);
    writes.keys.push(...rows.map(({ queue, id }) => ({ queue, id })));
  }

  /**
   * How long the fast path of `tx`'s durable jobs may still wait for Redis: at most
   * `fastPathTimeoutMs`, and it must be done (and its marking sent) before the relay may take
   * the rows. Zero or less: leave them to the relay.
   */
  fastPathBudgetMs(tx: TransactionContext): number {
    const writes = this.transactions.get(tx);
    const { fastPathTimeoutMs, markBatchDelayMs, relay } = this.options;
    if (!writes) return fastPathTimeoutMs;
    const eligibleAt =
      (writes.postponedAt ?? writes.firstWriteAt) + relay.graceMs;
    return Math.min(
      fastPathTimeoutMs,
      eligibleAt - performance.now() - markBatchDelayMs - MARK_MARGIN_MS,
    );
  }

  private async postpone(
    tx: TransactionContext,
    writes: TransactionWrites,
  ): Promise<void> {
    const elapsed = performance.now() - writes.firstWriteAt;
    if (writes.keys.length === 0 || elapsed < this.options.relay.graceMs / 2)
      return;
    writes.postponedAt = performance.now();
    await this.store.postpone(tx.manager, writes.keys);
  }
}
