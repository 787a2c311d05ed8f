import { Module } from '@nestjs/common';
import { ThrottlerModule } from '@nestjs/throttler';
import Redis from 'ioredis';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { AccountThrottlerGuard } from './account-throttler.guard';
import { FailOpenRedisThrottlerStorage } from './fail-open-storage';

/**
 * Per-account rate limits (`RATE_LIMIT_MAX` requests per `RATE_LIMIT_WINDOW_MS`) counted in
 * Redis, so they hold across API processes. The app registers `AccountThrottlerGuard` as a
 * global guard after authentication.
 */
@Module({
  imports: [
    ThrottlerModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        throttlers: [
          {
            name: 'default',
            limit: config.rateLimit.limit,
            ttl: config.rateLimit.windowMs,
          },
        ],
        skipIf: () => config.rateLimit.limit === 0,
        errorMessage: (_context, detail) =>
          `Rate limit exceeded: ${detail.limit} requests per ${detail.ttl / 1000} s for this account; retry after ${detail.timeToBlockExpire} s`,
        storage: new FailOpenRedisThrottlerStorage(
          new Redis(config.redisUrl, {
            // NOTE: keys live beside the service's other keys, under its prefix.
            keyPrefix: `${config.bullPrefix}:throttle:`,
            maxRetriesPerRequest: 1,
            enableOfflineQueue: false,
          }),
          config.healthCheckTimeoutMs,
        ),
      }),
    }),
  ],
  providers: [AccountThrottlerGuard],
  exports: [AccountThrottlerGuard],
})
export class RateLimitModule {}
