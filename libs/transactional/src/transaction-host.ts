import type {
  EntityManager,
  EntityTarget,
  ObjectLiteral,
  Repository,
} from 'typeorm';
import type { TransactionHook } from './transaction-context';
import type { TransactionRunner } from './transaction-runner';
import { transactionStorage } from './transaction-storage';
import type { TransactionalOptions } from './transactional.interfaces';

/**
 * The way into the current transaction from any provider, for one connection. Inject it
 * (`TransactionHost` for the default connection, `@InjectTransactionHost(name)` for others) and
 * use `manager` or `getRepository()` wherever a plain repository would be used.
 *
 * NOTE: a repository injected with `@InjectRepository()` is bound to the DataSource's own
 * manager, so inside a scope it still runs on a separate pooled connection: its writes commit
 * at once (they survive a rollback) and its reads do not see the transaction's uncommitted
 * rows. Use `host.getRepository(Entity)` instead.
 */
export class TransactionHost {
  constructor(
    private readonly runner: TransactionRunner,
    /** Connection (DataSource) name this host serves. */
    readonly connectionName: string,
  ) {}

  /** Whether a transaction is active on this connection in the current async context. */
  get isActive(): boolean {
    return transactionStorage.get(this.connectionName) !== undefined;
  }

  /** The transaction's EntityManager, or the DataSource's manager outside a transaction. */
  get manager(): EntityManager {
    const scope = transactionStorage.get(this.connectionName);
    return scope
      ? scope.tx.manager
      : this.runner.driver(this.connectionName).manager;
  }

  /** A repository bound to the current transaction (or to no transaction outside one). */
  getRepository<E extends ObjectLiteral>(
    target: EntityTarget<E>,
  ): Repository<E> {
    return this.manager.getRepository(target);
  }

  /** Runs `fn` in a transaction scope of this connection (`propagation` default REQUIRED). */
  withTransaction<T>(
    fn: () => Promise<T>,
    options: Omit<TransactionalOptions, 'connectionName'> = {},
  ): Promise<T> {
    return this.runner.run(
      { ...options, connectionName: this.connectionName },
      fn,
      'TransactionHost.withTransaction',
    );
  }

  /**
   * Runs `fn` after the outermost commit of the current transaction, with no transaction bound,
   * awaited in registration order; a failure is logged and never reaches the caller. Dropped if
   * the transaction (or the NESTED scope it was registered in) rolls back. Outside a
   * transaction `fn` runs at once, as Django's `on_commit` does.
   */
  afterCommit(
    fn: () => unknown,
    description = 'afterCommit hook',
  ): Promise<void> {
    const hook = toHook(fn, description);
    const scope = transactionStorage.get(this.connectionName);
    if (!scope) return this.runner.runHooks([hook], 'after-commit');
    scope.frame.afterCommit.push(hook);
    return Promise.resolve();
  }

  /**
   * Runs `fn` after the current transaction rolls back, or after the NESTED scope it was
   * registered in rolls back to its savepoint. Does nothing outside a transaction.
   */
  afterRollback(fn: () => unknown, description = 'afterRollback hook'): void {
    transactionStorage
      .get(this.connectionName)
      ?.frame.afterRollback.push(toHook(fn, description));
  }
}

function toHook(fn: () => unknown, description: string): TransactionHook {
  return { run: fn, describe: () => description };
}
