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

  /** Every registered queue. */
  all(): IterableIterator<TransactionAwareQueue<any>> {
    return this.queues.values();
  }

  /**
   * Queues grouped by connection name. All of them, not only those durable by default: any
   * queue can write a durable job (`opts.durable`), and the relay must see its rows too.
   */
  byConnection(): Map<string, TransactionAwareQueue<any>[]> {
    const result = new Map<string, TransactionAwareQueue<any>[]>();
    for (const queue of this.queues.values()) {
      const queues = result.get(queue.connection);
      if (queues) queues.push(queue);
      else result.set(queue.connection, [queue]);
    }
    return result;
  }
}
