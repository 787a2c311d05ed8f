import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { withTimeout } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { DeliveryBacklog } from '../../deliveries/delivery-backlog';

/**
 * How far the workers are behind: the age of the oldest due delivery against
 * `HEALTH_DELIVERY_BACKLOG_MAX_AGE_MS`. A lagging backlog is reported (`lagging: true`, with the
 * age) but keeps the check up: taking API or worker instances out of service never helps a
 * backlog drain (a worker started to drain one must count as ready). Alert or autoscale on it.
 */
@Injectable()
export class DeliveryBacklogHealthIndicator {
  constructor(
    private readonly indicator: HealthIndicatorService,
    private readonly backlog: DeliveryBacklog,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `deliveryBacklog: up` with the oldest due delivery's age and whether it lags; `down` only when it cannot be read. */
  async isHealthy(key = 'deliveryBacklog') {
    const session = this.indicator.check(key);
    const maxAgeMs = this.config.healthDeliveryBacklogMaxAgeMs;
    try {
      const oldestDueAgeMs = await withTimeout(
        this.backlog.oldestDueAgeMs(),
        this.config.healthCheckTimeoutMs,
      );
      const lagging = oldestDueAgeMs > maxAgeMs;
      return session.up({
        oldestDueAgeMs,
        maxAgeMs,
        lagging,
        ...(lagging
          ? {
              message: `the oldest due delivery has waited ${oldestDueAgeMs} ms (limit ${maxAgeMs} ms): add workers`,
            }
          : {}),
      });
    } catch (error) {
      return session.down({ message: String(error) });
    }
  }
}
