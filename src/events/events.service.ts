import {
  Injectable,
  NotFoundException,
  PayloadTooLargeException,
} from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  Transactional,
} from '@app/transactional';
import { Delivery } from '../deliveries/delivery.entity';
import { DeliveryAttempt } from '../deliveries/delivery-attempt.entity';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from '../deliveries/delivery-queue';
import { WebhookEvent } from './event.entity';

/** Largest event payload accepted, as serialised JSON. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

/** Stores events and fans them out to deliveries, in the caller's transaction. */
@Injectable()
export class EventsService {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
  ) {}

  /**
   * Stores an event and one pending delivery per enabled endpoint of the account subscribed
   * to its type, and schedules the deliveries: the jobs reach Redis only after the commit.
   */
  @Transactional({ propagation: Propagation.Mandatory })
  async publish(
    accountId: string,
    type: string,
    payload: Record<string, unknown>,
  ) {
    const size = Buffer.byteLength(JSON.stringify(payload));
    if (size > MAX_PAYLOAD_BYTES) {
      throw new PayloadTooLargeException(
        `payload is ${size} bytes of JSON; the limit is ${MAX_PAYLOAD_BYTES} bytes`,
      );
    }
    const manager = this.tx.manager;
    const event = await manager.save(
      manager.create(WebhookEvent, { accountId, type, payload }),
    );
    const deliveries: { id: string }[] = await manager.query(
      `INSERT INTO deliveries (account_id, event_id, endpoint_id, status, next_attempt_at)
       SELECT $1, $2, e.id, 'pending', now() FROM endpoints e
       WHERE e.account_id = $1 AND NOT e.disabled
         AND (e.event_types IS NULL OR $3 = ANY (e.event_types))
       RETURNING id`,
      [accountId, event.id, type],
    );
    if (deliveries.length > 0) {
      await this.queue.addBulk(
        deliveries.map(({ id }) => ({
          data: { deliveryId: id },
          opts: { ...DELIVERY_JOB_OPTIONS, jobId: deliveryJobId(id, 1) },
        })),
      );
    }
    return { ...present(event), deliveries: deliveries.length };
  }

  /** The event, or 404 when it does not exist in this account. */
  async get(accountId: string, id: string) {
    const event = await this.tx
      .getRepository(WebhookEvent)
      .findOneBy({ id, accountId });
    if (!event) throw new NotFoundException(`Event ${id} not found`);
    return present(event);
  }

  /**
   * The event's deliveries with every attempt, oldest first, read from one snapshot so that a
   * delivery's status and its attempts agree while a worker records an attempt.
   */
  @Transactional({ isolationLevel: 'REPEATABLE READ' })
  async deliveries(accountId: string, id: string) {
    await this.get(accountId, id);
    const deliveries = await this.tx
      .getRepository(Delivery)
      .find({ where: { eventId: id, accountId }, order: { createdAt: 'ASC' } });
    const attempts = deliveries.length
      ? await this.tx
          .getRepository(DeliveryAttempt)
          .createQueryBuilder('a')
          .where('a.delivery_id IN (:...ids)', {
            ids: deliveries.map((d) => d.id),
          })
          .orderBy('a.number', 'ASC')
          .getMany()
      : [];
    return {
      data: deliveries.map((delivery) => ({
        ...delivery,
        attempts: attempts.filter((a) => a.deliveryId === delivery.id),
      })),
    };
  }
}

/** The public shape of an event. */
export function present(event: WebhookEvent) {
  return {
    id: event.id,
    type: event.type,
    payload: event.payload,
    createdAt: event.createdAt,
  };
}
