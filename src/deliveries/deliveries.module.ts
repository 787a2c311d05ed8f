import { BullModule, getQueueToken } from '@nestjs/bull';
import type { Queue } from 'bull';
import { Module } from '@nestjs/common';
import { TransactionalModule } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { HotStatements } from '../database/hot-statements';
import { EndpointsModule } from '../endpoints/endpoints.module';
import { DeliveriesController } from './deliveries.controller';
import { DeliveriesService } from './deliveries.service';
import { DeliveryLogService } from './delivery-log.service';
import { DeliveryOutcomeService } from './delivery-outcome.service';
import { DELIVERY_QUEUE } from './delivery-queue';
import { DeliveryReconciler } from './delivery-reconciler';
import { DeliveryStats } from './delivery-stats';
import { DeliveryWorker } from './delivery-worker';
import { DeliveryBacklog } from './delivery-backlog';
import { DeliveryDiverter } from './delivery-diverter';
import { EndpointSlots } from './endpoint-slots';

/** The delivery queue, its worker and reconciler, and the operator routes on deliveries. */
@Module({
  imports: [
    BullModule.registerQueueAsync({
      name: DELIVERY_QUEUE,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        settings: {
          // NOTE: the lock must outlive the request timeout, or the stalled-job check would
          // hand a slow delivery to a second worker while the first is still sending it.
          lockDuration:
            config.deliveryTimeoutMs + config.deliveryLeaseMarginMs + 5_000,
          stalledInterval: config.stalledIntervalMs,
          maxStalledCount: 10,
        },
      }),
    }),
    // Durable: a delivery job survives a crash or a Redis outage between commit and enqueue.
    // NOTE: jobs for an endpoint whose slots are all taken are parked as they are enqueued.
    TransactionalModule.registerQueue({
      name: DELIVERY_QUEUE,
      durable: true,
      diverter: DeliveryDiverter,
    }),
    EndpointsModule,
  ],
  controllers: [DeliveriesController],
  providers: [
    DeliveriesService,
    DeliveryLogService,
    DeliveryOutcomeService,
    DeliveryWorker,
    DeliveryReconciler,
    DeliveryStats,
    DeliveryBacklog,
    DeliveryDiverter,
    HotStatements,
    {
      provide: EndpointSlots,
      inject: [getQueueToken(DELIVERY_QUEUE), APP_CONFIG],
      useFactory: (queue: Queue, config: AppConfig) =>
        new EndpointSlots(
          queue.client,
          config.perEndpointConcurrency,
          config.deliveryTimeoutMs + config.deliveryLeaseMarginMs,
          config.bullPrefix,
        ),
    },
  ],
  exports: [
    DeliveryBacklog,
    BullModule,
    TransactionalModule,
    DeliveryWorker,
    DeliveryReconciler,
    DeliveryStats,
    DeliveryLogService,
  ],
})
export class DeliveriesModule {}
