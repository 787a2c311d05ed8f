import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { DeliveriesModule } from '../deliveries/deliveries.module';
import { HealthController } from './health.controller';
import { DeliveryBacklogHealthIndicator } from './indicators/delivery-backlog.health';
import { OutboxHealthIndicator } from './indicators/outbox.health';
import { RedisHealthIndicator } from './indicators/redis.health';
import { WorkerRoutesMiddleware } from './worker-routes.middleware';

/** `GET /health`, `/health/live`, `/health/ready` (terminus), on the API and on workers. */
@Module({
  imports: [
    TerminusModule.forRoot({ errorLogStyle: 'pretty' }),
    DeliveriesModule,
  ],
  controllers: [HealthController],
  providers: [
    RedisHealthIndicator,
    OutboxHealthIndicator,
    DeliveryBacklogHealthIndicator,
  ],
})
export class HealthModule implements NestModule {
  configure(consumer: MiddlewareConsumer) {
    consumer.apply(WorkerRoutesMiddleware).forRoutes('{*path}');
  }
}
