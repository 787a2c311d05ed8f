import { InjectQueue } from '@nestjs/bull';
import {
  Controller,
  Get,
  Inject,
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
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { DeliveryBacklog } from '../deliveries/delivery-backlog';
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
    private readonly backlog: DeliveryBacklog,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Readiness: 200 `ready` when the database answers and the oldest due delivery has waited
   * at most `READY_MAX_BACKLOG_AGE_MS`; 503 `lagging` (workers do not keep up: add workers)
   * or `down` (the database does not answer) otherwise. The body carries the backlog's age.
   */
  @Get('ready')
  @PublicRoute()
  async ready() {
    let oldestDueAgeMs: number;
    try {
      oldestDueAgeMs = await this.backlog.oldestDueAgeMs();
    } catch (error) {
      this.logger.warn(`health: database is down: ${String(error)}`);
      throw new ServiceUnavailableException({
        status: 'down',
        database: 'down',
      });
    }
    const thresholdMs = this.config.readyMaxBacklogAgeMs;
    const body = {
      status: oldestDueAgeMs > thresholdMs ? 'lagging' : 'ready',
      database: 'up',
      deliveryBacklog: { oldestDueAgeMs, thresholdMs },
    };
    if (body.status !== 'ready') throw new ServiceUnavailableException(body);
    return body;
  }

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
      deliveryBacklog:
        database === 'up'
          ? { oldestDueAgeMs: await this.backlog.oldestDueAgeMs() }
          : null,
      bodies: { ...this.bodyGuard.stats },
    };
    if (database !== 'up') throw new ServiceUnavailableException(body);
    return body;
  }
}
