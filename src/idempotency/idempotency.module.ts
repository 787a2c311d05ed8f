import { Global, Module } from '@nestjs/common';
import { IdempotencyService } from './idempotency.service';

/**
 * `IdempotencyService`, for the `@Idempotent()` POST handlers of every module (global: the
 * decorator injects it into their controllers).
 */
@Global()
@Module({
  providers: [IdempotencyService],
  exports: [IdempotencyService],
})
export class IdempotencyModule {}
