import { InjectQueue } from '@nestjs/bull';
import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { Queue } from 'bull';
import { withTimeout } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { DELIVERY_QUEUE } from '../../deliveries/delivery-queue';

/** Redis answers PING on the delivery queue's connection within the health timeout. */
@Injectable()
export class RedisHealthIndicator {
  constructor(
    private readonly indicator: HealthIndicatorService,
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `redis: up`, or `down` with the error's message. */
  async isHealthy(key = 'redis') {
    const session = this.indicator.check(key);
    try {
      await withTimeout(
        this.queue.client.ping(),
        this.config.healthCheckTimeoutMs,
      );
      return session.up();
    } catch (error) {
      return session.down({ message: String(error) });
    }
  }
}
