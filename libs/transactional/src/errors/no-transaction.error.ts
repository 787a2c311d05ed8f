import { TransactionalError } from './transactional.error';

/**
 * Thrown by `TransactionAwareQueue.add()` / `addBulk()` outside a transaction when the queue
 * was registered with `whenNoTransaction: 'throw'`.
 */
export class NoTransactionError extends TransactionalError {
  constructor(queueName: string, connectionName: string) {
    super(
      `TransactionAwareQueue "${queueName}" was asked to add a job outside a transaction on ` +
        `connection "${connectionName}", and it is registered with whenNoTransaction: 'throw'. ` +
        `Add the job from a @Transactional() scope, or register the queue with ` +
        `whenNoTransaction: 'enqueue' or 'warn'.`,
    );
  }
}
