import type {
  EntityManager,
  EntityTarget,
  ObjectLiteral,
  Repository,
} from 'typeorm';
import type { TransactionHook, TransactionScope } from './transaction-context';
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

  /**
   * Whether a transaction is active on this connection in the current async context: `false`
   * outside a scope and once the scope the code runs in has ended.
   */
  get isActive(): boolean {
    const scope = transactionStorage.get(this.connectionName);
    return (
      scope !== undefined &&
      scope.tx.owner === this.runner &&
      !scope.frame.closed
    );
  }

  /**
   * The transaction's EntityManager, or the DataSource's manager outside a transaction. Throws
   * `TransactionClosedError` in a scope that has ended (its connection is gone).
   */
  get manager(): EntityManager {
    const scope = this.scope('TransactionHost.manager');
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
   * transaction `fn` runs at once, as Django's `on_commit` does. Rejects with
   * `TransactionClosedError` in a scope that has ended.
   */
  afterCommit(
    fn: () => unknown,
    description = 'afterCommit hook',
  ): Promise<void> {
    let hook: TransactionHook;
    try {
      hook = toHook(fn, description, 'afterCommit');
    } catch (error) {
      return Promise.reject(error);
    }
    let scope: TransactionScope | undefined;
    try {
      scope = this.scope('TransactionHost.afterCommit()');
    } catch (error) {
      return Promise.reject(error);
    }
    if (!scope) return this.runner.runHooks([hook], 'after-commit');
    scope.frame.afterCommit.push(hook);
    return Promise.resolve();
  }

  /**
   * Runs `fn` once the work registered with it is rolled back: when the transaction rolls back,
   * or, registered inside a NESTED scope whose savepoint rolls back, when the outermost
   * transaction ends (commit or rollback), so that the hook never competes with the still open
   * transaction for its locks. Does nothing outside a transaction; throws
   * `TransactionClosedError` in a scope that has ended.
   */
  afterRollback(fn: () => unknown, description = 'afterRollback hook'): void {
    const hook = toHook(fn, description, 'afterRollback');
    this.scope('TransactionHost.afterRollback()')?.frame.afterRollback.push(
      hook,
    );
  }

  /** This runner's scope bound for the connection, if any; one that has ended throws. */
  private scope(what: string): TransactionScope | undefined {
    const scope = transactionStorage.get(this.connectionName);
    if (!scope || scope.tx.owner !== this.runner) return undefined;
    scope.tx.target(scope.frame, what);
    return scope;
  }
}

function toHook(
  fn: () => unknown,
  description: string,
  method: string,
): TransactionHook {
  if (typeof fn !== 'function') {
    // NOTE: `afterCommit(work())` (a promise) ran `work` inside the transaction already, and the
    // mistake would only show as a log line after the commit.
    throw new TypeError(
      `TransactionHost.${method}() takes a function, got ${fn === null ? 'null' : typeof fn}: ` +
        `pass () => work(), not work().`,
    );
  }
  return { run: fn, describe: () => description };
}
