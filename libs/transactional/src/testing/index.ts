export { TransactionalTestingModule } from './transactional-testing.module';
export { TransactionalTestingKit } from './transactional-testing-kit';
export { InMemoryTransactionDriver } from './in-memory-transaction-driver';
export { JobProcessingError } from './job-processing.error';
export type {
  CapturedJob,
  JobFailure,
  TestingJobHandler,
  TestingQueueMode,
  TestingQueueOptions,
  TransactionalTestingModuleOptions,
} from './testing.interfaces';
