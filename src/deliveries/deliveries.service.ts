import { randomUUID } from 'crypto';
import {
  BadRequestException,
  Injectable,
  NotFoundException,
  UnprocessableEntityException,
} from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  TransactionAwareQueue,
  TransactionHost,
  Transactional,
} from 'nestjs-transactional-jobs';
import { EndpointsService } from '../endpoints/endpoints.service';
import { requireDateTime } from '../http/date-time';
import { Delivery } from './delivery.entity';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
} from './delivery-queue';
import { currentJobContext } from '../observability/job-context';

/** How far back `recover` may reach. */
export const RECOVER_MAX_AGE_MS = 14 * 24 * 3600 * 1000;

/** Most deliveries one `recover` call re-sends. */
export const RECOVER_MAX_DELIVERIES = 10_000;

/** Operator actions on deliveries: manual resend and bulk recovery of failures. */
@Injectable()
export class DeliveriesService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly endpoints: EndpointsService,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
  ) {}

  /** Queues one manual attempt (not retried automatically if it fails). */
  @Transactional()
  async retry(accountId: string, id: string) {
    const delivery = await this.tx
      .getRepository(Delivery)
      .findOneBy({ id, accountId });
    if (!delivery) throw new NotFoundException(`Delivery ${id} not found`);
    const jobId = await this.queue.add(
      {
        deliveryId: id,
        endpointId: delivery.endpointId,
        trigger: 'manual',
        context: currentJobContext(),
      },
      // NOTE: unique per call, not per millisecond: Bull ignores an add whose id is taken, and
      // every call answered `queued: true` must make its own attempt.
      { ...DELIVERY_JOB_OPTIONS, jobId: `${id}:manual:${randomUUID()}` },
    );
    return { deliveryId: id, status: delivery.status, queued: true, jobId };
  }

  /**
   * Re-sends the endpoint's failed deliveries created since `since` (manual attempts), each
   * once however many recover calls race: see `onlyIfFailedAt`.
   */
  @Transactional()
  async recover(accountId: string, endpointId: string, since: string) {
    await this.endpoints.find(accountId, endpointId);
    const from = requireDateTime(since, 'since');
    const now = Date.now();
    if (from.getTime() > now)
      throw new BadRequestException('since must not be in the future');
    if (now - from.getTime() > RECOVER_MAX_AGE_MS) {
      throw new UnprocessableEntityException(
        'since must be within the last 14 days',
      );
    }
    const rows: { id: string; attempt_count: number }[] =
      await this.tx.manager.query(
        `SELECT id, attempt_count FROM deliveries
       WHERE account_id = $1 AND endpoint_id = $2 AND status = 'failed'
         AND created_at >= $3::timestamptz
       ORDER BY created_at LIMIT $4`,
        // NOTE: the text as sent: a fraction finer than the millisecond counts, as it does in
        // the events list (a Date would round it down and take in an earlier delivery).
        [accountId, endpointId, since, RECOVER_MAX_DELIVERIES],
      );
    // NOTE: idempotent per delivery: the job re-sends it only if it is still failed with
    // this attempt count (see claimDelivery), and the job id is the same for every recover
    // call that saw the same failure, so racing calls add one job (Bull de-duplicates it).
    const context = currentJobContext();
    await this.queue.addBulk(
      rows.map(({ id, attempt_count }) => ({
        data: {
          deliveryId: id,
          endpointId,
          trigger: 'manual' as const,
          onlyIfFailedAt: attempt_count,
          context,
        },
        opts: {
          ...DELIVERY_JOB_OPTIONS,
          jobId: `${id}:recover:${attempt_count}`,
        },
      })),
    );
    return { endpointId, since: from, queued: rows.length };
  }
}
