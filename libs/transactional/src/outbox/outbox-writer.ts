import { performance } from 'perf_hooks';
import { Deadline, DeadlineQueue } from '../deadline-queue';
import type { TransactionContext } from '../transaction-context';
import type { HookFrame } from '../transaction-context';
import type {
  OutboxRow,
  OutboxRowKey,
  OutboxStore,
  PreparedOutboxRow,
} from './outbox-store';
import type { ResolvedOutboxOptions } from './outbox.options';

/**
 * The fast path stops this long before the relay may take its rows, on top of the marking
 * delay: the time the marking UPDATE needs to reach Postgres.
 */
const MARK_MARGIN_MS = 50;

/**
 * Most rows held back for the COMMIT in one transaction; more are written as they come (five
 * parameters each, far below Postgres' 65,535 per statement).
 */
const MAX_HELD_ROWS = 1000;

/** What one transaction wrote to the outbox of one connection. */
interface TransactionWrites {
  /** Rows written (some may have been rolled back with a savepoint since). */
  readonly keys: OutboxRowKey[];
  /** Rows of the transaction's root scope held back to go with the COMMIT. */
  readonly held: PreparedOutboxRow[];
  /** When the first INSERT was sent (`performance.now()`). */
  firstWriteAt: number;
  /** When the before-commit UPDATE was sent, if it ran. */
  postponedAt?: number;
  /**
   * INSERTs sent at add() and not settled yet: one may still wait at the statement gate behind a
   * savepoint that a NESTED scope left running holds. The COMMIT waits for them, so that a
   * durable add() called while its scope was open is written in the transaction.
   */
  readonly pending: Set<Promise<void>>;
}

/**
 * Writes durable jobs to the outbox in the caller's transaction and keeps their rows away from
 * the relay until the fast path is done with them. A row is eligible `graceMs` after its INSERT;
 * when the transaction has been open for more than half of that, one UPDATE right before COMMIT
 * (a before-commit step, registered once per transaction) counts the grace period from the
 * commit instead. The fast path gets the time that is left (`fastPathBudgetMs`).
 *
 * Rows added in the transaction's root scope (no savepoint of theirs to roll back) are held back
 * where the connection can send a statement with its COMMIT (Postgres): checked at once, written
 * by one INSERT in front of the COMMIT, in the same round trip, and eligible `graceMs` from then.
 * If that INSERT fails the commit fails and everything rolls back, as when an INSERT fails
 * earlier. Internal.
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

  /**
   * Inserts `rows` in `tx` (see `OutboxStore.insert`) for a scope bound to `frame`, or holds them
   * for the COMMIT (see the class comment): then `undefined`, nothing to wait for.
   */
  write(
    tx: TransactionContext,
    rows: OutboxRow[],
    frame: HookFrame,
  ): Promise<void> | undefined {
    // NOTE: kept on the transaction itself (one writer per connection, one connection per
    // transaction): a WeakMap entry per transaction costs the garbage collector more.
    let writes = tx.outboxWrites as TransactionWrites | undefined;
    if (!writes) {
      writes = {
        keys: [],
        held: [],
        firstWriteAt: performance.now(),
        pending: new Set(),
      };
      tx.outboxWrites = writes;
      const registered = writes;
      tx.beforeCommit.push({
        run: () => this.postpone(tx, registered),
        describe: () =>
          `count the outbox grace period of ${registered.keys.length} row(s) from the commit`,
      });
    }
    const written = writes;
    const { store } = this;
    if (
      frame === tx.root &&
      tx.handle.commitsWithStatement &&
      store.prepare &&
      store.insertStatement &&
      written.held.length + rows.length <= MAX_HELD_ROWS
    ) {
      written.held.push(...store.prepare(rows));
      tx.leadingCommit ??= () => this.leadingCommit(written);
      return undefined;
    }
    const inserting = store.insert(tx.manager, rows).then(() => {
      for (const { queue, id } of rows) written.keys.push({ queue, id });
    });
    written.pending.add(inserting);
    const settled = () => void written.pending.delete(inserting);
    inserting.then(settled, settled);
    return inserting;
  }

  /** The INSERT of the held rows, sent with the COMMIT: their grace period starts now. */
  private leadingCommit(writes: TransactionWrites) {
    if (writes.held.length === 0) return undefined;
    if (writes.keys.length === 0) writes.firstWriteAt = performance.now();
    return this.store.insertStatement!(writes.held);
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
    if (writes.pending.size > 0) {
      // NOTE: their failure is their add()'s; the COMMIT only waits for them to settle.
      return Promise.allSettled([...writes.pending]).then(() =>
        this.postpone(tx, writes),
      );
    }
    const elapsed = performance.now() - writes.firstWriteAt;
    if (writes.keys.length === 0 || elapsed < this.options.relay.graceMs / 2)
      return undefined;
    writes.postponedAt = performance.now();
    return this.store.postpone(tx.manager, writes.keys);
  }
}
