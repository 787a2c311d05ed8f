import { TransactionalError } from './transactional.error';

/** Thrown by a `Propagation.Never` scope that is entered while a transaction is active. */
export class TransactionNotAllowedError extends TransactionalError {
  constructor(where: string, connectionName: string) {
    super(
      `${where} must not run inside a transaction (propagation NEVER), but one is active on ` +
        `connection "${connectionName}". Call it outside the transaction, or use ` +
        `NOT_SUPPORTED to suspend the transaction for the call.`,
    );
  }
}
