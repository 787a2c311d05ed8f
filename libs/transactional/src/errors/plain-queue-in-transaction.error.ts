import { TransactionalError } from './transactional.error';

/**
 * Raised (as a warning by default, thrown when configured) when a plain Bull queue's `add()`
 * or `addBulk()` runs while a transaction is active: the job can reach a worker before the
 * transaction commits, or survive its rollback.
 */
export class PlainQueueInTransactionError extends TransactionalError {
  constructor(queueName: string, method: string) {
    super(
      `Bull queue "${queueName}".${method}() was called inside an active transaction: a worker ` +
        `may run the job before the transaction commits (and not find its rows), or after it ` +
        `rolls back. Inject it with @InjectTransactionAwareQueue('${queueName}') instead, ` +
        `which enqueues after the outermost commit.`,
    );
  }
}
