import { BullAdapter } from '@bull-board/api/bullAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { BullBoardModule } from '@bull-board/nestjs';
import { Module } from '@nestjs/common';
import { DELIVERY_QUEUE } from '../../deliveries/delivery-queue';
import { DashboardAuthMiddleware } from './dashboard-auth.middleware';

/**
 * Bull keeps a job in the hash `<prefix>:<queue>:<job id>`, next to its own keys (`id` is a
 * string, `wait` a list, ...): a job id naming one of them makes HGETALL fail with WRONGTYPE,
 * which Bull Board answers 500 with Redis' message. No job has such an id: 404.
 */
class DeliveryQueueAdapter extends BullAdapter {
  override async getJob(id: string) {
    try {
      return await super.getJob(id);
    } catch (error) {
      if (String(error).includes('WRONGTYPE')) return undefined;
      throw error;
    }
  }
}

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
      adapter: DeliveryQueueAdapter,
      options: { readOnlyMode: true },
    }),
  ],
  providers: [DashboardAuthMiddleware],
})
export class QueueDashboardModule {}
