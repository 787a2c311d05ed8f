import { InjectQueue } from '@nestjs/bull';
import {
  Controller,
  Get,
  Logger,
  ServiceUnavailableException,
} from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  TransactionRunner,
  TransactionalOutbox,
  withTimeout,
} from 'nestjs-transactional-jobs';
import { PublicRoute } from '../auth/auth.decorators';
import { DELIVERY_QUEUE } from '../deliveries/delivery-queue';
import { DeliveryStats } from '../deliveries/delivery-stats';
import { JsonBodyGuard } from '../http/json-body.guard';

/**
 * 'up', or 'down' when `check` fails. The route is public: the error (addresses, ports,
 * credentials in a URL) goes to the log, never into the answer.
 */
export async function probe(
  check: Promise<unknown>,
  name: string,
  logger: Pick<Logger, 'warn'>,
): Promise<'up' | 'down'> {
  try {
    await check;
    return 'up';
  } catch (error) {
    logger.warn(`health: ${name} is down: ${String(error)}`);
    return 'down';
  }
}

/** Liveness and the state operators watch: database, Redis, outbox backlog, queue counts. */
@Controller('health')
export class HealthController {
  private readonly logger = new Logger(HealthController.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly runner: TransactionRunner,
    private readonly outbox: TransactionalOutbox,
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue,
    private readonly deliveryStats: DeliveryStats,
    private readonly bodyGuard: JsonBodyGuard,
  ) {}

  @Get()
  @PublicRoute()
  async check() {
    const [database, redis] = await Promise.all([
      probe(this.dataSource.query('SELECT 1'), 'database', this.logger),
      probe(withTimeout(this.queue.client.ping(), 1000), 'redis', this.logger),
    ]);
    const body = {
      status: database === 'up' && redis === 'up' ? 'ok' : 'degraded',
      database,
      redis,
      outbox: database === 'up' ? await this.outbox.stats() : null,
      transactions: this.runner.stats,
      deliveryJobs: redis === 'up' ? await this.queue.getJobCounts() : null,
      deliveries: this.deliveryStats.snapshot(),
      bodies: { ...this.bodyGuard.stats },
    };
    if (database !== 'up') throw new ServiceUnavailableException(body);
    return body;
  }
}
