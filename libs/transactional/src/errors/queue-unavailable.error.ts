import { TransactionalError } from './transactional.error';

/**
 * Reason an outbox relay's enqueue failed at once: the Bull queue's Redis client was not
 * connected, so the commands would only have waited in its offline queue. The rows stay in the
 * outbox for a later attempt.
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
