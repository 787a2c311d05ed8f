import {
  ApiBearerAuth,
  ApiOkResponse,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import { ADMIN_TOKEN_SCHEME } from '../openapi/api-docs.decorators';
import { InjectQueue } from '@nestjs/bull';
import {
  Controller,
  Get,
  Inject,
  Logger,
  Req,
  ServiceUnavailableException,
} from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckResult,
  HealthCheckService,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import type { Queue } from 'bull';
import type { Request } from 'express';
import { DataSource } from 'typeorm';
import {
  TransactionRunner,
  TransactionalOutbox,
  withTimeout,
} from 'nestjs-transactional-jobs';
import { hasAdminToken } from '../auth/admin-token';
import { PublicRoute } from '../auth/auth.decorators';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { DELIVERY_QUEUE } from '../deliveries/delivery-queue';
import { DeliveryStats } from '../deliveries/delivery-stats';
import { JsonBodyGuard } from '../http/json-body.guard';
import { assertSingleHeader } from '../http/single-header';
import { HealthCheckResponseDto } from './dto/health-check-response.dto';
import { HealthSummaryResponseDto } from './dto/health-summary-response.dto';
import { redactHealth } from './health-details';
import { DeliveryBacklogHealthIndicator } from './indicators/delivery-backlog.health';
import { OutboxHealthIndicator } from './indicators/outbox.health';
import { RedisHealthIndicator } from './indicators/redis.health';

/**
 * 'up', or 'down' when `check` fails. The error (addresses, ports, credentials in a URL) goes
 * to the log, never into an anonymous answer.
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

/**
 * Liveness and readiness (terminus) for load balancers and orchestrators, and the state
 * operators watch. Anyone may call them; details (errors, counts) need the admin token.
 */
@ApiTags('health')
@Controller('health')
export class HealthController {
  private readonly logger = new Logger(HealthController.name);

  constructor(
    private readonly health: HealthCheckService,
    private readonly database: TypeOrmHealthIndicator,
    private readonly redisIndicator: RedisHealthIndicator,
    private readonly outboxIndicator: OutboxHealthIndicator,
    private readonly backlogIndicator: DeliveryBacklogHealthIndicator,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly runner: TransactionRunner,
    private readonly outbox: TransactionalOutbox,
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue,
    private readonly deliveryStats: DeliveryStats,
    private readonly bodyGuard: JsonBodyGuard,
  ) {}

  /** The process runs and its event loop answers; no dependency is checked. */
  @Get('live')
  @ApiOkResponse({
    type: HealthCheckResponseDto,
    description: 'The process is alive.',
  })
  @PublicRoute()
  // NOTE: liveness never answers 503: only the 200 is documented.
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  /**
   * Postgres and Redis answer within the timeout and the outbox backlog is young; else 503.
   * Also reports the delivery backlog's age (`deliveryBacklog.lagging` past
   * `HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS`), which does not fail the check.
   */
  @Get('ready')
  @PublicRoute()
  // NOTE: documented with our DTO rather than terminus' inline schemas (same shape).
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  @ApiOkResponse({
    type: HealthCheckResponseDto,
    description: 'Every check is up.',
  })
  @ApiServiceUnavailableResponse({
    type: HealthCheckResponseDto,
    description: 'A check is down (`status` is `error`).',
  })
  @ApiBearerAuth(ADMIN_TOKEN_SCHEME)
  async ready(@Req() request: Request): Promise<HealthCheckResult> {
    assertSingleHeader(request, 'Authorization');
    const admin = hasAdminToken(request, this.config.adminToken);
    const timeout = this.config.healthCheckTimeoutMs;
    try {
      const result = await this.health.check([
        () => this.database.pingCheck('database', { timeout }),
        () => this.redisIndicator.isHealthy('redis'),
        () => this.outboxIndicator.isHealthy('outbox'),
        () => this.backlogIndicator.isHealthy('deliveryBacklog'),
      ]);
      return admin ? result : redactHealth(result);
    } catch (error) {
      if (error instanceof ServiceUnavailableException && !admin) {
        throw new ServiceUnavailableException(
          redactHealth(error.getResponse() as HealthCheckResult),
        );
      }
      throw error;
    }
  }

  /**
   * Summary for anyone (`status`, `database`, `redis`); with the admin token also the outbox
   * backlog, transaction and delivery counters and queue counts. 503 while Postgres is down.
   */
  @Get()
  @ApiBearerAuth(ADMIN_TOKEN_SCHEME)
  @ApiOkResponse({
    type: HealthSummaryResponseDto,
    description:
      'status, database, redis; with the admin token also the counters.',
  })
  @PublicRoute()
  async check(@Req() request: Request) {
    assertSingleHeader(request, 'Authorization');
    const timeout = this.config.healthCheckTimeoutMs;
    const [database, redis] = await Promise.all([
      probe(
        withTimeout(this.dataSource.query('SELECT 1'), timeout),
        'database',
        this.logger,
      ),
      probe(
        withTimeout(this.queue.client.ping(), timeout),
        'redis',
        this.logger,
      ),
    ]);
    const summary = {
      status: database === 'up' && redis === 'up' ? 'ok' : 'degraded',
      database,
      redis,
    };
    const body = hasAdminToken(request, this.config.adminToken)
      ? {
          ...summary,
          outbox: database === 'up' ? await this.outbox.stats() : null,
          transactions: this.runner.stats,
          deliveryJobs: redis === 'up' ? await this.queue.getJobCounts() : null,
          deliveries: this.deliveryStats.snapshot(),
          bodies: { ...this.bodyGuard.stats },
        }
      : summary;
    if (database !== 'up') throw new ServiceUnavailableException(body);
    return body;
  }
}
