import type { EntityManager } from 'typeorm';
import type { IsolationLevel } from './transactional.interfaces';
import type { LeadingStatement } from './dialect/pg-deferred-begin';

export type { LeadingStatement };

/** How a `COMMIT` ended: Postgres answers a commit of an aborted transaction with a rollback. */
export type CommitOutcome = 'committed' | 'rolled-back';

/**
 * One open database transaction, as the runner sees it. The TypeORM driver implements it on a
 * `QueryRunner`; the testing kit implements it without a database.
 */
export interface TransactionHandle {
  /** EntityManager bound to the transaction's connection. */
  readonly manager: EntityManager;
  /**
   * Commits, after running `leading` (if given, only when `commitsWithStatement`) in the same
   * round trip; if it fails, the commit rejects with its error. Resolves with `'rolled-back'` when the database rolled the transaction back
   * instead (a statement failed in it earlier); rejects when the database refuses otherwise.
   */
  commit(leading?: LeadingStatement): Promise<CommitOutcome>;
  /**
   * Whether `commit()` can send a statement in front of COMMIT in the same round trip (Postgres
   * with `coalesceRoundTrips`). Optional: absent means it cannot, and nothing is passed.
   */
  readonly commitsWithStatement?: boolean;
  /** Rolls back. */
  rollback(): Promise<void>;
  /** Runs `SAVEPOINT`, `RELEASE SAVEPOINT` or `ROLLBACK TO SAVEPOINT` with the given name. */
  savepoint(
    action: 'create' | 'release' | 'rollback',
    name: string,
  ): Promise<void>;
  /**
   * Whether the database has aborted the transaction (or the current savepoint): a statement
   * failed and nothing but a rollback is accepted any more. Optional: a driver that cannot tell
   * leaves it out, and `commit()` reports the outcome.
   */
  isAborted?(): boolean;
  /**
   * Makes every statement run through `manager` ask `turn()` first and wait for the promise it
   * returns, if any (savepoint statements of the handle itself do not). Optional: the runner
   * uses it to keep statements of concurrent scopes out of a savepoint that is not theirs.
   */
  setStatementGate?(turn: () => Promise<void> | undefined): void;
  /**
   * Makes `manager.transaction(fn)` on this transaction's EntityManager call `nested` (the
   * runner runs it as a NESTED scope) instead of opening a savepoint the runner does not know.
   * Optional.
   */
  setNestedTransactions?(
    nested: <T>(work: () => Promise<T>) => Promise<T>,
  ): void;
  /** Returns the connection to the pool; called once, after commit or rollback. */
  release(): Promise<void>;
}

/** Where a transaction is being opened, for the error raised when no connection is free. */
export interface BeginContext {
  /** The scope that opens it (`Class.method`). */
  where: string;
  /** Whether the caller already holds a transaction (so a connection) of any connection. */
  insideTransaction: boolean;
}

/** Opens transactions for one connection name. */
export interface TransactionDriver {
  /** Opens a transaction on a connection of its own. */
  begin(
    isolationLevel?: IsolationLevel,
    context?: BeginContext,
  ): Promise<TransactionHandle>;
  /** EntityManager to use outside any transaction. */
  readonly manager: EntityManager;
}
