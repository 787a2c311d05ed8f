import { TransactionalError } from '../errors/transactional.error';
import { errorText } from '../transaction-runner';
import type { JobFailure } from './testing.interfaces';

/**
 * Thrown by `TransactionalTestingKit.assertNoFailures()` when `'run'` mode handlers failed;
 * lists each failed job and keeps the failures in `failures`.
 */
export class JobProcessingError extends TransactionalError {
  constructor(
    /** The failed jobs and their errors, in the order they failed. */
    readonly failures: readonly JobFailure[],
  ) {
    super(
      `${failures.length} job(s) failed in TransactionalTestingModule's 'run' mode:\n` +
        failures
          .map(
            ({ queue, job, error }) =>
              `- queue "${queue}", job "${job.name}" (id ${job.id}): ${errorText(error)}`,
          )
          .join('\n'),
    );
  }
}
