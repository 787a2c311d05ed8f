export { Propagation } from './propagation';
export { Transactional } from './transactional.decorator';
export { TransactionalInterceptor } from './transactional.interceptor';
export { TransactionalModule } from './transactional.module';
export { TransactionHost } from './transaction-host';
export { TransactionRunner } from './transaction-runner';
export type { TransactionRunnerStats } from './transaction-runner';
export { TransactionAwareQueue } from './transaction-aware-queue';
export type { TransactionAwareQueueStats } from './transaction-aware-queue';
export {
  InjectTransactionAwareFlowProducer,
  InjectTransactionAwareQueue,
  InjectTransactionHost,
} from './transactional.inject';
export { TransactionAwareFlowProducer } from './bullmq/transaction-aware-flow-producer';
export type {
  FlowJobIds,
  TransactionAwareFlowProducerStats,
} from './bullmq/transaction-aware-flow-producer';
export type { TransactionAwareFlowProducerOptions } from './bullmq/bullmq.interfaces';
export {
  DEFAULT_CONNECTION_NAME,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from './transactional.constants';
export type {
  BulkJob,
  IsolationLevel,
  JobDiverter,
  JobOptionsOf,
  OutgoingJob,
  QueueKind,
  NoTransactionPolicy,
  PlainQueuePolicy,
  TransactionAwareQueueOptions,
  TransactionalModuleAsyncOptions,
  TransactionalModuleOptions,
  TransactionalOptions,
} from './transactional.interfaces';
export type {
  BeginContext,
  CommitOutcome,
  LeadingStatement,
  TransactionDriver,
  TransactionHandle,
} from './transaction-driver';
export { TransactionalError } from './errors/transactional.error';
export { TransactionRequiredError } from './errors/transaction-required.error';
export { TransactionNotAllowedError } from './errors/transaction-not-allowed.error';
export { NoTransactionError } from './errors/no-transaction.error';
export { PlainQueueInTransactionError } from './errors/plain-queue-in-transaction.error';
export { UnknownConnectionError } from './errors/unknown-connection.error';
export { UnexpectedRollbackError } from './errors/unexpected-rollback.error';
export { TransactionAbortedError } from './errors/transaction-aborted.error';
export { TransactionClosedError } from './errors/transaction-closed.error';
export { TransactionControlError } from './errors/transaction-control.error';
export { ConnectionAcquireTimeoutError } from './errors/connection-acquire-timeout.error';
export { QueueUnavailableError } from './errors/queue-unavailable.error';
export { TransactionalOutbox } from './outbox/transactional-outbox';
export {
  createOutboxMigration,
  createOutboxUpgradeMigration,
} from './outbox/outbox.migration';
export type { OutboxMigrationOptions } from './outbox/outbox.migration';
export type {
  OutboxOptions,
  OutboxRelayOptions,
} from './outbox/outbox.options';
export type { OutboxRowError, OutboxStats } from './outbox/outbox-store';
export type { TransactionAwareJobOptions } from './transactional.interfaces';
export { removeBullJobHusks } from './bull-job-husks';
export { withTimeout } from './with-timeout';
export { TransactionalMetrics } from './observability/transactional-metrics';
export type {
  QueueMetrics,
  TransactionalMetricsSnapshot,
} from './observability/transactional-metrics';
export type { OutboxRelayStats } from './outbox/outbox-relay.service';
export { TRACER_NAME } from './observability/tracer-name';
