/** Name TypeORM and @nestjs/typeorm give to the DataSource registered without a name. */
export const DEFAULT_CONNECTION_NAME = 'default';

/** Metadata key under which `@Transactional` stores its options on a method. */
export const TRANSACTIONAL_OPTIONS_METADATA = 'transactional:options';

/** Injection token of the resolved `TransactionalModuleOptions`. */
export const TRANSACTIONAL_MODULE_OPTIONS = 'transactional:module-options';

/** Key of the CLS store entry that holds the active transaction scope of each connection. */
export const TRANSACTION_SCOPES_KEY: unique symbol = Symbol.for(
  'transactional:scopes',
);

/**
 * Token of the `TransactionAwareQueue` registered for a Bull queue name (as `getQueueToken` is
 * for the Bull queue itself).
 */
export function getTransactionAwareQueueToken(name: string): string {
  return `transactional:queue:${name}`;
}

/**
 * Token of the `TransactionHost` for a named connection. The default connection's host is
 * also provided under the `TransactionHost` class itself.
 */
export function getTransactionHostToken(
  connectionName: string = DEFAULT_CONNECTION_NAME,
): string {
  return `transactional:host:${connectionName}`;
}

/**
 * Token of the `TransactionAwareFlowProducer` registered for a BullMQ flow producer name (as
 * `getFlowProducerToken` is for the flow producer itself).
 */
export function getTransactionAwareFlowProducerToken(name: string): string {
  return `transactional:flow-producer:${name}`;
}
