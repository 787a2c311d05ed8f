import { TransactionalError } from './transactional.error';

/**
 * Thrown when code inside a transaction scope tries to control the transaction behind the
 * library's back: a `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE` (or `END`, `ABORT`,
 * `START TRANSACTION`, `PREPARE TRANSACTION`, `XA`) sent as SQL on the transaction's
 * connection, or TypeORM's `startTransaction()`, `commitTransaction()` or
 * `rollbackTransaction()` called on its query runner. Sent, they would end the transaction or open a
 * savepoint the library cannot see, so a job could be enqueued for rows that were rolled back,
 * or dropped for rows that were committed. The statement is refused before it is sent; nothing
 * changes, and the scope goes on (or rolls back, if the error propagates).
 */
export class TransactionControlError extends TransactionalError {
  constructor(
    /** What was refused: the statement's first words, or the query runner method. */
    readonly refused: string,
    connectionName: string,
  ) {
    super(
      `${refused} was refused inside a transaction scope on connection "${connectionName}": ` +
        `the library commits, rolls back and opens savepoints itself, so that jobs follow ` +
        `the transaction's outcome. Return from the scope to commit, throw to roll back, and ` +
        `for a savepoint run the work in a @Transactional({ propagation: Propagation.NESTED }) ` +
        `scope or in manager.transaction(fn), which rolls back only that work and its jobs.`,
    );
  }
}
