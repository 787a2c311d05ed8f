import { TransactionalError } from './transactional.error';

/** Thrown by a `Propagation.Mandatory` scope that is entered with no active transaction. */
export class TransactionRequiredError extends TransactionalError {
  constructor(where: string, connectionName: string) {
    super(
      `${where} requires an active transaction on connection "${connectionName}" ` +
        `(propagation MANDATORY) but none is active. Call it from a @Transactional() scope, ` +
        `or change its propagation to REQUIRED.`,
    );
  }
}
