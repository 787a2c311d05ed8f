import {
  Inject,
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
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { Delivery } from '../deliveries/delivery.entity';
import { RetrySchedule } from '../webhooks-http/retry-schedule';
import { DeliveryAttempt } from '../deliveries/delivery-attempt.entity';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from '../deliveries/delivery-queue';
import { StoredEvent, toStoredEvent } from './stored-event';

/** Largest event payload accepted, as serialised JSON. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

/** Stores events and fans them out to deliveries, in the caller's transaction. */
@Injectable()
export class EventsService {
  private readonly schedule: RetrySchedule;

  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.schedule = new RetrySchedule({ scheduleMs: config.retryScheduleMs });
  }

  /**
   * Stores an event and one pending delivery per enabled endpoint of the account subscribed
   * to its type, and schedules the deliveries: the jobs reach Redis only after the commit.
   * A payload given as JSON text is stored and later delivered exactly as that text.
   */
  @Transactional({ propagation: Propagation.Mandatory })
  async publish(
    accountId: string,
    type: string,
    payload: string | Record<string, unknown>,
  ): Promise<StoredEvent & { deliveries: number }> {
    const payloadText =
      typeof payload === 'string' ? payload : JSON.stringify(payload);
    const size = Buffer.byteLength(payloadText);
    if (size > MAX_PAYLOAD_BYTES) {
      throw new PayloadTooLargeException(
        `payload is ${size} bytes of JSON; the limit is ${MAX_PAYLOAD_BYTES} bytes`,
      );
    }
    const manager = this.tx.manager;
    // NOTE: a json (not jsonb) column keeps the text as sent: key order, spacing, numbers.
    const [row]: { id: string; created_at: Date }[] = await manager.query(
      `INSERT INTO events (account_id, type, payload) VALUES ($1, $2, $3::json)
       RETURNING id, created_at`,
      [accountId, type, payloadText],
    );
    // The first entry of the retry schedule is the wait before the first attempt.
    const delay = this.schedule.initialDelay();
    const deliveries: { id: string }[] = await manager.query(
      `INSERT INTO deliveries (account_id, event_id, endpoint_id, status, next_attempt_at)
       SELECT $1, $2, e.id, 'pending', now() + make_interval(secs => $4::float8 / 1000)
         FROM endpoints e
       WHERE e.account_id = $1 AND NOT e.disabled
         AND (e.event_types IS NULL OR $3 = ANY (e.event_types))
       RETURNING id`,
      [accountId, row.id, type, delay],
    );
    if (deliveries.length > 0) {
      await this.queue.addBulk(
        deliveries.map(({ id }) => ({
          data: { deliveryId: id },
          opts: {
            ...DELIVERY_JOB_OPTIONS,
            jobId: deliveryJobId(id, 1),
            ...(delay > 0 ? { delay } : {}),
          },
        })),
      );
    }
    return {
      id: row.id,
      type,
      payloadText,
      createdAt: row.created_at,
      deliveries: deliveries.length,
    };
  }

  /** The event with its payload text, or 404 when it does not exist in this account. */
  async get(accountId: string, id: string): Promise<StoredEvent> {
    const [row] = await this.tx.manager.query(
      `SELECT id, type, payload::text AS payload_text, created_at FROM events
       WHERE id = $1 AND account_id = $2`,
      [id, accountId],
    );
    if (!row) throw new NotFoundException(`Event ${id} not found`);
    return toStoredEvent(row);
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

/** The public shape of an event as a plain object (for events the service wrote itself). */
export function present(event: StoredEvent) {
  return {
    id: event.id,
    type: event.type,
    payload: JSON.parse(event.payloadText) as unknown,
    createdAt: event.createdAt,
  };
}
