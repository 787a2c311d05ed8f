import type { NoTransactionPolicy } from '../transactional.interfaces';

/**
 * Options of `TransactionalModule.registerFlowProducer()`: one BullMQ flow producer made
 * transaction-aware.
 */
export interface TransactionAwareFlowProducerOptions {
  /** Name of the flow producer, as registered with `BullModule.registerFlowProducer({ name })`. */
  name: string;
  /** What `add()` does outside a transaction. Default: `'enqueue'`. */
  whenNoTransaction?: NoTransactionPolicy;
  /** Connection whose transactions this flow producer defers to. Default: `'default'`. */
  connectionName?: string;
}
