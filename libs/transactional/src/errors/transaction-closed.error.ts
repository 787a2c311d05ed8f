import { TransactionalError } from './transactional.error';

/**
 * Thrown when work is registered with a transaction scope that has already ended: an `add()`,
 * `afterCommit()`, `afterRollback()`, `manager` or nested `@Transactional` call made by a
 * promise that was not awaited inside the scope and ran after it returned. Such work can no
 * longer be tied to the transaction's outcome, so it is refused instead of being lost or sent
 * for rows that may not exist.
 */
export class TransactionClosedError extends TransactionalError {
  constructor(what: string, connectionName: string) {
    super(
      `${what} was called in a transaction scope on connection "${connectionName}" that has ` +
        `already ended (committed or rolled back). It most likely runs in a promise that the ` +
        `@Transactional() method did not await. Await it inside the scope, or start it from ` +
        `an afterCommit() hook if it should run after the commit.`,
    );
  }
}
