import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { withTimeout } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { DeliveryBacklog } from '../../deliveries/delivery-backlog';

/**
 * The workers keep up: the oldest due delivery has waited at most
 * `HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS` (an older one: add workers).
 */
@Injectable()
export class DeliveryBacklogHealthIndicator {
  constructor(
    private readonly indicator: HealthIndicatorService,
    private readonly backlog: DeliveryBacklog,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `deliveryBacklog: up` with the oldest due delivery's age, or `down` once it is too old. */
  async isHealthy(key = 'deliveryBacklog') {
    const session = this.indicator.check(key);
    const maxAgeMs = this.config.healthDeliveryBacklogMaxAgeMs;
    try {
      const oldestDueAgeMs = await withTimeout(
        this.backlog.oldestDueAgeMs(),
        this.config.healthCheckTimeoutMs,
      );
      const details = { oldestDueAgeMs, maxAgeMs };
      if (oldestDueAgeMs > maxAgeMs) {
        return session.down({
          ...details,
          message: `the oldest due delivery has waited ${oldestDueAgeMs} ms (limit ${maxAgeMs} ms)`,
        });
      }
      return session.up(details);
    } catch (error) {
      return session.down({ message: String(error) });
    }
  }
}
