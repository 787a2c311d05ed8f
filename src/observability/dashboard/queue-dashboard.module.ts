import { BullAdapter } from '@bull-board/api/bullAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { BullBoardModule } from '@bull-board/nestjs';
import { Module } from '@nestjs/common';
import { DELIVERY_QUEUE } from '../../deliveries/delivery-queue';
import { DashboardAuthMiddleware } from './dashboard-auth.middleware';

/** Path of the queue dashboard. */
export const DASHBOARD_ROUTE = '/admin/queues';

/**
 * Bull Board at `/admin/queues` (API processes), behind the admin token. Read-only: jobs are
 * only schedules (Postgres holds the deliveries), so retries and replays go through the API,
 * which records them.
 */
@Module({
  imports: [
    BullBoardModule.forRoot({
      route: DASHBOARD_ROUTE,
      adapter: ExpressAdapter,
      middleware: DashboardAuthMiddleware,
      boardOptions: { uiConfig: { boardTitle: 'Webhook deliveries' } },
    }),
    BullBoardModule.forFeature({
      name: DELIVERY_QUEUE,
      adapter: BullAdapter,
      options: { readOnlyMode: true },
    }),
  ],
  providers: [DashboardAuthMiddleware],
})
export class QueueDashboardModule {}
