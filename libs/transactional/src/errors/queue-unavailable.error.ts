import { TransactionalError } from './transactional.error';

/**
 * Reason an after-commit enqueue (or an outbox relay's) failed at once: the Bull queue's Redis
 * client was not connected, so the commands would only have waited in its offline queue. A
 * durable job stays in the outbox for the relay; any other job is lost (logged and counted).
 */
export class QueueUnavailableError extends TransactionalError {
  constructor(queueName: string, status: string) {
    super(
      `Queue "${queueName}": its Redis client is not connected (status "${status}"); the ` +
        `enqueue was refused at once instead of waiting in the client's offline queue. Use ` +
        `durable mode for jobs that must survive a Redis outage.`,
    );
  }
}
