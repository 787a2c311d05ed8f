import { Injectable } from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from 'nestjs-transactional-jobs';
import { Order } from './order.entity.js';
import { DURABLE_QUEUE, ORDERS_QUEUE } from './queue.js';

/** The payload of an order job. */
export interface OrderJob {
  orderId: string;
}

/** Provider methods under `@Transactional()`, as users write them. */
@Injectable()
export class OrdersService {
  /** Ids `add()` resolved with, by label, including those of transactions that rolled back. */
  readonly jobIds = new Map<string, string>();

  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(ORDERS_QUEUE)
    private readonly orders: TransactionAwareQueue<OrderJob>,
    @InjectTransactionAwareQueue(DURABLE_QUEUE)
    private readonly durable: TransactionAwareQueue<OrderJob>,
  ) {}

  /** Saves an order and queues its job; `fail` throws after both, so the transaction rolls back. */
  @Transactional()
  async create(label: string, fail = false, durable = false): Promise<Order> {
    const order = await this.tx.getRepository(Order).save({ label });
    const queue = durable ? this.durable : this.orders;
    this.jobIds.set(label, await queue.add({ orderId: order.id }));
    // A little more work before COMMIT, as real handlers do: the window of the race.
    await this.tx.manager.query('SELECT pg_sleep(0.003)');
    if (fail) throw new Error(`order ${label} refused`);
    return order;
  }

  /** An outer order whose NESTED inner order fails: only the inner one is undone. */
  @Transactional()
  async createWithFailingNested(label: string): Promise<void> {
    await this.create(label);
    await this.createNested(`${label}-inner`).catch(() => undefined);
  }

  /** A savepoint scope that saves and queues, then fails. */
  @Transactional({ propagation: Propagation.Nested })
  async createNested(label: string): Promise<void> {
    await this.create(label, true);
  }
}
