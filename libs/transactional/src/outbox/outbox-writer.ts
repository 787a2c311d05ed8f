import { performance } from 'perf_hooks';
import { Deadline, DeadlineQueue } from '../deadline-queue';
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
  /** Deadlines of fast paths that get the whole `fastPathTimeoutMs` (nearly all of them). */
  private readonly fastPathDeadlines: DeadlineQueue;

  constructor(
    private readonly store: OutboxStore,
    private readonly options: ResolvedOutboxOptions,
  ) {
    this.fastPathDeadlines = new DeadlineQueue(options.fastPathTimeoutMs);
  }

  /** Inserts `rows` in `tx` (see `OutboxStore.insert`). */
  write(tx: TransactionContext, rows: OutboxRow[]): Promise<void> {
    // NOTE: kept on the transaction itself (one writer per connection, one connection per
    // transaction): a WeakMap entry per transaction costs the garbage collector more.
    let writes = tx.outboxWrites as TransactionWrites | undefined;
    if (!writes) {
      writes = { keys: [], firstWriteAt: performance.now() };
      tx.outboxWrites = writes;
      const registered = writes;
      tx.beforeCommit.push({
        run: () => this.postpone(tx, registered),
        describe: () =>
          `count the outbox grace period of ${registered.keys.length} row(s) from the commit`,
      });
    }
    const written = writes;
    return this.store.insert(tx.manager, rows).then(() => {
      for (const { queue, id } of rows) written.keys.push({ queue, id });
    });
  }

  /**
   * Starts the deadline of a fast path that may take `ms` (from `fastPathBudgetMs`): `onExpire`
   * runs once they have passed, unless cancelled first.
   */
  startDeadline(ms: number, onExpire: () => void): Deadline {
    if (ms === this.options.fastPathTimeoutMs) {
      return this.fastPathDeadlines.start(onExpire);
    }
    const timer = setTimeout(onExpire, ms);
    return { cancel: () => clearTimeout(timer) };
  }

  /**
   * How long the fast path of `tx`'s durable jobs may still wait for Redis: at most
   * `fastPathTimeoutMs`, and it must be done (and its marking sent) before the relay may take
   * the rows. Zero or less: leave them to the relay.
   */
  fastPathBudgetMs(tx: TransactionContext): number {
    const writes = tx.outboxWrites as TransactionWrites | undefined;
    const { fastPathTimeoutMs, markBatchDelayMs, relay } = this.options;
    if (!writes) return fastPathTimeoutMs;
    const eligibleAt =
      (writes.postponedAt ?? writes.firstWriteAt) + relay.graceMs;
    return Math.min(
      fastPathTimeoutMs,
      eligibleAt - performance.now() - markBatchDelayMs - MARK_MARGIN_MS,
    );
  }

  /** The before-commit step: `undefined` when the rows need no new grace period. */
  private postpone(
    tx: TransactionContext,
    writes: TransactionWrites,
  ): Promise<void> | undefined {
    const elapsed = performance.now() - writes.firstWriteAt;
    if (writes.keys.length === 0 || elapsed < this.options.relay.graceMs / 2)
      return undefined;
    writes.postponedAt = performance.now();
    return this.store.postpone(tx.manager, writes.keys);
  }
}
