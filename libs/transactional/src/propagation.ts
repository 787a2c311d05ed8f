/**
 * How a `@Transactional` scope relates to a transaction that is already active on the same
 * connection. The names and meanings are Spring's, which Django, Rails and nestjs-cls share.
 */
export enum Propagation {
  /** Join the active transaction, or open a new one when none is active. The default. */
  Required = 'REQUIRED',
  /**
   * Always open a new, independent transaction on its own connection; the active one (if any)
   * is suspended and invisible inside. Work deferred inside is flushed on this scope's own commit.
   * It needs a second pooled connection while the caller holds one: with as many concurrent
   * callers as the pool has connections it could never get one, so the wait is bounded by
   * `acquireTimeoutMs` and ends in `ConnectionAcquireTimeoutError`.
   */
  RequiresNew = 'REQUIRES_NEW',
  /**
   * Open a savepoint inside the active transaction (or a new transaction when none is active).
   * If the scope throws, the database rolls back to the savepoint and the work deferred inside
   * the scope is dropped; if it returns, its deferred work is handed to the enclosing scope.
   * NESTED scopes of one transaction run one at a time (a concurrent sibling waits for the
   * savepoint to end), and statements of enclosing scopes issued meanwhile wait too. A body that
   * catches a database error and returns rolls back all the same (`UnexpectedRollbackError`).
   */
  Nested = 'NESTED',
  /** Join the active transaction if there is one; otherwise run without a transaction. */
  Supports = 'SUPPORTS',
  /** Join the active transaction; throw `TransactionRequiredError` when none is active. */
  Mandatory = 'MANDATORY',
  /** Run without a transaction; throw `TransactionNotAllowedError` when one is active. */
  Never = 'NEVER',
  /** Run without a transaction; an active one is suspended (invisible) for the scope. */
  NotSupported = 'NOT_SUPPORTED',
}

/**
 * Whether a scope with this propagation opens a scope of its own every time it is entered
 * (REQUIRES_NEW, NESTED), so must not be applied twice to one call. Internal.
 */
export function opensOwnScope(options: { propagation?: Propagation }): boolean {
  return (
    options.propagation === Propagation.RequiresNew ||
    options.propagation === Propagation.Nested
  );
}
