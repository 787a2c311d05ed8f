import { TransactionalError } from './transactional.error';

/**
 * Thrown by a scope whose work returned normally but was rolled back all the same: a statement
 * failed inside it (Postgres then aborts the transaction, or the savepoint, and turns `COMMIT`
 * into `ROLLBACK`), and the error was caught before the scope ended. Like Spring's
 * `UnexpectedRollbackException`: nothing of the scope was committed, no job was enqueued and no
 * after-commit hook ran; after-rollback hooks did.
 */
export class UnexpectedRollbackError extends TransactionalError {
  constructor(where: string, what: 'transaction' | 'savepoint') {
    super(
      `${where} returned normally, but its ${what} was rolled back: a statement failed inside ` +
        `it and the error was caught, so the database ${
          what === 'transaction'
            ? 'aborted the transaction and refused to commit it'
            : 'could not release the savepoint'
        }. Nothing it wrote was kept and none of its jobs was enqueued. Let the error ` +
        `propagate, or run the statement that may fail in a Propagation.NESTED scope ` +
        `(a savepoint) so that catching its error keeps the rest of the transaction.`,
    );
  }
}
