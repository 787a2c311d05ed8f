import { Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import Redis from 'ioredis';
import { withTimeout } from 'nestjs-transactional-jobs';

/**
 * The Redis storage of @nest-lab/throttler-storage-redis (one atomic Lua script per hit, so
 * every API process counts against the same window), failing open: while Redis does not
 * answer within `timeoutMs`, requests are let through unlimited and the outage is logged once,
 * rather than turning every request into a 500 (the API keeps taking events durably while
 * Redis is down).
 */
export class FailOpenRedisThrottlerStorage
  implements ThrottlerStorage, OnModuleInit, OnModuleDestroy
{
  private readonly logger = new Logger('RateLimit');
  private readonly inner: ThrottlerStorageRedisService;
  private failing = false;

  constructor(
    private readonly redis: Redis,
    private readonly timeoutMs: number,
  ) {
    this.inner = new ThrottlerStorageRedisService(redis);
    // NOTE: failures are reported by increment(); ioredis would print every reconnect error.
    redis.on('error', () => undefined);
  }

  /** Counts one hit of `key`; see `ThrottlerStorage.increment`. */
  async increment(
    key: string,
    ttl: number,
    limit: number,
    blockDuration: number,
    throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    try {
      const record = await withTimeout(
        this.inner.increment(key, ttl, limit, blockDuration, throttlerName),
        this.timeoutMs,
      );
      if (this.failing) this.logger.log('rate limits are enforced again');
      this.failing = false;
      return record;
    } catch (error) {
      if (!this.failing)
        this.logger.warn(
          `rate limits are not enforced while Redis does not answer: ${String(error)}`,
        );
      this.failing = true;
      return {
        totalHits: 0,
        timeToExpire: 0,
        isBlocked: false,
        timeToBlockExpire: 0,
      };
    }
  }

  /** Waits (at most `timeoutMs`) for the first connection, so the first requests count. */
  async onModuleInit() {
    if (this.redis.status === 'ready') return;
    await withTimeout(
      new Promise((resolve) => this.redis.once('ready', resolve)),
      this.timeoutMs,
    ).catch(() => undefined);
  }

  onModuleDestroy() {
    this.redis.disconnect();
  }
}
