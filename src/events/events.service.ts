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
} from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import {
  PreparedStatement,
  preparedQuery,
  preparedStatement,
} from '../database/prepared-query';
import { requireDateTime } from '../http/date-time';
import { RetrySchedule } from '../webhooks-http/retry-schedule';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from '../deliveries/delivery-queue';
import {
  DEFAULT_PAGE_SIZE,
  decodeTimeCursor,
  positionSql,
  toPage,
} from '../http/pagination';
import { RawJson } from '../http/raw-json';
import { ListEventsQueryDto } from './dto/list-events.dto';
import { StoredEvent, eventJson, toStoredEvent } from './stored-event';
import { currentJobContext } from '../observability/job-context';

/** Largest event payload accepted, as serialised JSON. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

/** Where {@link publishCtes} takes each value of the event: SQL expressions (parameters, columns). */
export interface PublishedEventSql {
  account: string;
  type: string;
  /** The payload's JSON text (or a `json` value). */
  payload: string;
  trip: string;
  /** Milliseconds until the first attempt (the statement's last parameter). */
  delayMs: string;
  /** Tables the values come from, if any: one event per row. */
  from?: string;
  /**
   * The event's time (and its deliveries'): by default the clock when the statement writes it,
   * not the transaction's start (`now()`), which a transaction that waited for a lock would
   * carry into the past, behind events committed before it.
   */
  createdAt?: string;
}

/**
 * The common table expressions `event` and `delivery` that store an event and one pending
 * delivery per enabled endpoint of the account subscribed to its type, due in `delayMs`, for a
 * statement that ends with `SELECT ..., ${PUBLISHED_COLUMNS} FROM ..., ${PUBLISHED_FROM}`: a row
 * per delivery (one row with null delivery columns when there is none). NOTE: a json (not jsonb)
 * column keeps the text as sent: key order, spacing, numbers.
 *
 * The endpoints are locked (key share, the lock the foreign key check takes anyway) as they are
 * read: an endpoint whose DELETE is in flight is waited for and then left out. Read without the
 * lock, it was still in the statement's snapshot, and the delivery's foreign key check, waiting
 * for the delete, failed (a 500 for a request that had done nothing wrong).
 */
export function publishCtes(e: PublishedEventSql): string {
  return `event AS (
    INSERT INTO events (account_id, type, payload, trip_id, created_at)
    SELECT ${e.account}, ${e.type}, (${e.payload})::json, ${e.trip}, ${e.createdAt ?? 'clock_timestamp()'}${e.from ? `\n      FROM ${e.from}` : ''}
    RETURNING id, created_at),
  delivery AS (
    INSERT INTO deliveries (account_id, event_id, endpoint_id, status, next_attempt_at, created_at, updated_at)
    SELECT ${e.account}, event.id, e.id, 'pending',
           event.created_at + make_interval(secs => ${e.delayMs}::float8 / 1000),
           event.created_at, event.created_at
      FROM event, endpoints e
     WHERE e.account_id = ${e.account} AND NOT e.disabled
       AND (e.event_types IS NULL OR ${e.type} = ANY (e.event_types))
       FOR KEY SHARE OF e
    RETURNING id, endpoint_id)`;
}

/** The columns of {@link publishCtes} a publishing statement selects ({@link PublishedRow}). */
export const PUBLISHED_COLUMNS = `event.id AS event_id, event.created_at AS event_created_at,
         delivery.id AS delivery_id, delivery.endpoint_id`;

/** What a publishing statement selects {@link PUBLISHED_COLUMNS} from, last. */
export const PUBLISHED_FROM = 'event LEFT JOIN delivery ON true';

/**
 * Stores an event ($1 account, $2 type, $3 payload text, $4 trip) and its deliveries, due in $5
 * ms, in one statement (see {@link publishCtes}).
 */
export const PUBLISH_SQL = `WITH ${publishCtes({
  account: '$1',
  type: '$2',
  payload: '$3',
  trip: '$4',
  delayMs: '$5',
})}
  SELECT ${PUBLISHED_COLUMNS} FROM ${PUBLISHED_FROM}`;

const PUBLISH = preparedStatement('publish', PUBLISH_SQL);

/** A row of a publishing statement: its event, and one of its deliveries (or none). */
export interface PublishedRow {
  event_id: string;
  event_created_at: Date;
  delivery_id: string | null;
  endpoint_id: string | null;
}

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
    tripId: string | null = null,
  ): Promise<StoredEvent & { deliveries: number }> {
    const payloadText =
      typeof payload === 'string' ? payload : JSON.stringify(payload);
    const size = Buffer.byteLength(payloadText);
    if (size > MAX_PAYLOAD_BYTES) {
      throw new PayloadTooLargeException(
        `payload is ${size} bytes of JSON; the limit is ${MAX_PAYLOAD_BYTES} bytes`,
      );
    }
    const { rows, deliveries } = await this.run<PublishedRow>(PUBLISH, [
      accountId,
      type,
      payloadText,
      tripId,
    ]);
    return {
      id: rows[0].event_id,
      type,
      payloadText,
      createdAt: rows[0].event_created_at,
      deliveries,
    };
  }

  /**
   * Runs `statement`, which stores an event with {@link publishCtes} (among other things) and
   * selects {@link PUBLISHED_COLUMNS}, with `params` and then the wait before the first attempt
   * (its last parameter), and schedules the deliveries it stored: the jobs reach Redis only
   * after the commit. Resolves with its rows (none when it stored no event) and the number of
   * deliveries. The caller checks the payload's size ({@link MAX_PAYLOAD_BYTES}).
   */
  @Transactional({ propagation: Propagation.Mandatory })
  async publishWith<R extends PublishedRow>(
    statement: PreparedStatement,
    params: unknown[],
  ): Promise<{ rows: R[]; deliveries: number }> {
    return this.run<R>(statement, params);
  }

  /** {@link publishWith}, in the transaction the caller made sure of. */
  private async run<R extends PublishedRow>(
    statement: PreparedStatement,
    params: unknown[],
  ): Promise<{ rows: R[]; deliveries: number }> {
    // The first entry of the retry schedule is the wait before the first attempt.
    const delay = this.schedule.initialDelay();
    const rows = await preparedQuery<R>(this.tx.manager, statement, [
      ...params,
      delay,
    ]);
    const deliveries = rows
      .filter((r) => r.delivery_id !== null)
      .map((r) => ({ id: r.delivery_id!, endpoint_id: r.endpoint_id! }));
    if (deliveries.length > 0) {
      const context = currentJobContext();
      await this.queue.addBulk(
        deliveries.map(({ id, endpoint_id }) => ({
          data: context
            ? { deliveryId: id, endpointId: endpoint_id, context }
            : { deliveryId: id, endpointId: endpoint_id },
          opts: {
            ...DELIVERY_JOB_OPTIONS,
            jobId: deliveryJobId(id, 1),
            ...(delay > 0 ? { delay } : {}),
          },
        })),
      );
    }
    return { rows, deliveries: deliveries.length };
  }

  /** The account's events, newest first, one page at a time, optionally filtered. */
  async list(accountId: string, query: ListEventsQueryDto): Promise<RawJson> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const params: unknown[] = [accountId, limit + 1];
    const where = ['account_id = $1'];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (query.type !== undefined) add('type = ?', query.type);
    if (query.tripId !== undefined) add('trip_id = ?', query.tripId);
    // NOTE: the text as sent (checked by requireDateTime) keeps fractions finer than 1 ms.
    if (query.since !== undefined) {
      requireDateTime(query.since, 'since');
      add('created_at >= ?::timestamptz', query.since);
    }
    if (query.until !== undefined) {
      requireDateTime(query.until, 'until');
      add('created_at < ?::timestamptz', query.until);
    }
    if (query.cursor !== undefined) {
      const after = decodeTimeCursor(query.cursor);
      params.push(after.at, after.id);
      where.push(
        `(created_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`,
      );
    }
    const rows = await this.tx.manager.query(
      `SELECT id, type, payload::text AS payload_text, created_at,
              ${positionSql('created_at')} AS position
         FROM events WHERE ${where.join(' AND ')}
        ORDER BY created_at DESC, id DESC LIMIT $2`,
      params,
    );
    const page = toPage(
      rows,
      limit,
      (row: { position: string } & Parameters<typeof toStoredEvent>[0]) =>
        eventJson(toStoredEvent(row)),
      (row) => ({ at: row.position, id: row.id }),
    );
    return RawJson.object({
      data: new RawJson(`[${page.data.map((e) => e.text).join(',')}]`),
      nextCursor: page.nextCursor,
    });
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
