import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { TransactionalOutbox, withTimeout } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../../config/app-config';

/**
 * The outbox backlog is young: its oldest undispatched row is younger than
 * `HEALTH_OUTBOX_MAX_AGE_MS` (an older one means Redis or the relay is not keeping up).
 */
@Injectable()
export class OutboxHealthIndicator {
  constructor(
    private readonly indicator: HealthIndicatorService,
    private readonly outbox: TransactionalOutbox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `outbox: up` with the backlog's size and age, or `down` once it is too old. */
  async isHealthy(key = 'outbox') {
    const session = this.indicator.check(key);
    const maxAgeMs = this.config.healthOutboxMaxAgeMs;
    try {
      const stats = await withTimeout(
        this.outbox.stats(),
        this.config.healthCheckTimeoutMs,
      );
      const details = {
        pending: stats.pending,
        oldestPendingAgeMs: stats.oldestPendingAgeMs,
        maxAgeMs,
      };
      if ((stats.oldestPendingAgeMs ?? 0) > maxAgeMs) {
        return session.down({
          ...details,
          message: `the oldest undispatched outbox row is ${stats.oldestPendingAgeMs} ms old (limit ${maxAgeMs} ms)`,
        });
      }
      return session.up(details);
    } catch (error) {
      return session.down({ message: String(error) });
    }
  }
}
