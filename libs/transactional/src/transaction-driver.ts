import type { EntityManager } from 'typeorm';
import type { IsolationLevel } from './transactional.interfaces';

/**
 * One open database transaction, as the runner sees it. The TypeORM driver implements it on a
 * `QueryRunner`; the testing kit implements it without a database.
 */
export interface TransactionHandle {
  /** EntityManager bound to the transaction's connection. */
  readonly manager: EntityManager;
  /** Commits; rejects when the database refuses (the transaction is then rolled back). */
  commit(): Promise<void>;
  /** Rolls back. */
  rollback(): Promise<void>;
  /** Runs `SAVEPOINT`, `RELEASE SAVEPOINT` or `ROLLBACK TO SAVEPOINT` with the given name. */
  savepoint(
    action: 'create' | 'release' | 'rollback',
    name: string,
  ): Promise<void>;
  /** Returns the connection to the pool; called once, after commit or rollback. */
  release(): Promise<void>;
}

/** Opens transactions for one connection name. */
export interface TransactionDriver {
  /** Opens a transaction on a connection of its own. */
  begin(isolationLevel?: IsolationLevel): Promise<TransactionHandle>;
  /** EntityManager to use outside any transaction. */
  readonly manager: EntityManager;
}
