import type { TransactionAwareQueue } from './transaction-aware-queue';

/** Every `TransactionAwareQueue` of the application, by Bull queue name. Internal. */
export class QueueRegistry {
  private readonly queues = new Map<string, TransactionAwareQueue<any>>();

  /** Adds a queue (done by `registerQueue`'s provider). */
  add(queue: TransactionAwareQueue<any>): void {
    this.queues.set(queue.name, queue);
  }

  /** The queue registered under `name`, if any. */
  get(name: string): TransactionAwareQueue<any> | undefined {
    return this.queues.get(name);
  }

  /** Durable queues grouped by connection name. */
  durableByConnection(): Map<string, TransactionAwareQueue<any>[]> {
    const result = new Map<string, TransactionAwareQueue<any>[]>();
    for (const queue of this.queues.values()) {
      if (!queue.durable) continue;
      result.set(queue.connection, [
        ...(result.get(queue.connection) ?? []),
        queue,
      ]);
    }
    return result;
  }
}
