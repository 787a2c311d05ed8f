import { TransactionalError } from './transactional.error';

/**
 * Thrown for a statement sent in a MySQL or MariaDB transaction that the database has already
 * ended on its own: a deadlock (1213), a lock wait timeout with `innodb_rollback_on_timeout`, a
 * lost connection or another error rolled the whole transaction back, or a statement committed
 * it implicitly (DDL such as `CREATE TABLE`, or a `COMMIT`/`ROLLBACK` sent by hand). The
 * database would run the statement outside any transaction (autocommit), so the library refuses
 * it; the scope then ends with `UnexpectedRollbackError` (or this error, when the transaction
 * was committed implicitly) and none of its jobs is enqueued.
 */
export class TransactionAbortedError extends TransactionalError {
  constructor(
    /** What was refused (`A statement`, `SAVEPOINT`, `COMMIT`). */
    what: string,
    connectionName: string,
    /** Why the transaction is no longer open. */
    readonly reason: string,
    /** How it ended: rolled back by the database, or ended by a statement of the transaction. */
    readonly outcome: 'rolled-back' | 'ended',
  ) {
    super(
      outcome === 'rolled-back'
        ? `${what} was refused: the database rolled back the whole transaction on connection ` +
            `"${connectionName}" (${reason}) and would run it outside any transaction. Nothing ` +
            `the transaction wrote is kept. Let the error propagate and retry the whole ` +
            `transaction; catching it does not bring the transaction back.`
        : `${what} was refused: the transaction on connection "${connectionName}" was ended by ` +
            `one of its own statements (${reason}); MySQL and MariaDB commit implicitly before ` +
            `DDL. What it wrote before that statement may have been committed; none of its ` +
            `jobs was enqueued. Run DDL and COMMIT/ROLLBACK outside @Transactional() scopes.`,
    );
  }
}
