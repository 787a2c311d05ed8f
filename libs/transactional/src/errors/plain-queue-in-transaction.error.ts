import { TransactionalError } from './transactional.error';

/**
 * Raised (as a warning by default, thrown when configured) when a plain Bull queue's `add()`
 * or `addBulk()` runs while a transaction is active (or a BullMQ queue's, or a BullMQ
 * `FlowProducer`'s): the job can reach a worker before the transaction commits, or survive its
 * rollback.
 */
export class PlainQueueInTransactionError extends TransactionalError {
  constructor(
    queueName: string,
    method: string,
    /** What was called: a Bull queue (default), a BullMQ queue or a BullMQ flow producer. */
    what: 'Bull queue' | 'BullMQ queue' | 'BullMQ FlowProducer' = 'Bull queue',
  ) {
    const instead =
      what === 'BullMQ FlowProducer'
        ? `Inject a TransactionAwareFlowProducer with @InjectTransactionAwareFlowProducer() ` +
          `instead`
        : `Inject it with @InjectTransactionAwareQueue('${queueName}') instead`;
    super(
      `${what} "${queueName}".${method}() was called inside an active transaction: a worker ` +
        `may run the job before the transaction commits (and not find its rows), or after it ` +
        `rolls back. ${instead}, which enqueues after the outermost commit.`,
    );
  }
}
