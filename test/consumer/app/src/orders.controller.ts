import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from 'nestjs-transactional-jobs';
import { Order } from './order.entity.js';
import { OrderJob, OrdersService } from './orders.service.js';
import { ORDERS_QUEUE } from './queue.js';

/** Routes of the consumer app: a transactional handler, and one that calls a provider. */
@Controller('orders')
export class OrdersController {
  constructor(
    private readonly tx: TransactionHost,
    private readonly service: OrdersService,
    @InjectTransactionAwareQueue(ORDERS_QUEUE)
    private readonly orders: TransactionAwareQueue<OrderJob>,
  ) {}

  /** The handler is the transaction: the job reaches Redis after its COMMIT. */
  @Post()
  @Transactional()
  async create(@Body() body: { label: string }) {
    const order = await this.tx
      .getRepository(Order)
      .save({ label: body.label });
    const jobId = await this.orders.add({ orderId: order.id });
    await this.tx.manager.query('SELECT pg_sleep(0.003)');
    return { id: order.id, jobId };
  }

  /** No transaction here: the provider method opens it. */
  @Post('via-service')
  @HttpCode(201)
  async createViaService(
    @Body() body: { label: string; fail?: boolean; durable?: boolean },
  ) {
    const order = await this.service.create(
      body.label,
      body.fail,
      body.durable,
    );
    return { id: order.id, jobId: this.service.jobIds.get(body.label) };
  }
}
