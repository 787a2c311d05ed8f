import { Module } from '@nestjs/common';
import { RetentionService } from './retention.service';

/** Scheduled deletion of old events, attempts and idempotency keys. */
@Module({ providers: [RetentionService], exports: [RetentionService] })
export class RetentionModule {}
