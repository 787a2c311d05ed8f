import { Injectable, NotFoundException } from '@nestjs/common';
import { SelectQueryBuilder } from 'typeorm';
import { TransactionHost, Transactional } from 'nestjs-transactional-jobs';
import {
  DEFAULT_PAGE_SIZE,
  Page,
  PageQueryDto,
  decodeNumberCursor,
  decodeTimeCursor,
  encodeCursor,
  positionSql,
  toPage,
} from '../http/pagination';
import { DeliveryAttempt } from './delivery-attempt.entity';
import { Delivery } from './delivery.entity';
import { ListDeliveriesQueryDto } from './dto/list-deliveries.dto';

/** Attempts shown inline with each delivery of an event; all of them: `.../attempts`. */
export const INLINE_ATTEMPTS = 50;

/**
 * Bytes of stored responses one page of an event's deliveries inlines at most: the page stops
 * before the delivery that would pass it (its first delivery is always there), and its
 * `nextCursor` goes on from there. Without it a page of 100 deliveries could inline 5,000
 * responses of 64 KiB (JSON escapes can make each six times longer).
 */
export const INLINE_RESPONSE_BUDGET = 8 * 1024 * 1024;

type WithAttempts = Delivery & { attempts: DeliveryAttempt[] };

/** Reads of deliveries and attempts, always scoped to one account, one page at a time. */
@Injectable()
export class DeliveryLogService {
  constructor(private readonly tx: TransactionHost) {}

  /** The account's deliveries, newest first, filtered by status, endpoint or event. */
  async list(
    accountId: string,
    query: ListDeliveriesQueryDto,
  ): Promise<Page<Delivery>> {
    const qb = this.tx
      .getRepository(Delivery)
      .createQueryBuilder('d')
      .where('d.account_id = :accountId', { accountId });
    if (query.status) qb.andWhere('d.status = :status', query);
    if (query.endpointId) qb.andWhere('d.endpoint_id = :endpointId', query);
    if (query.eventId) qb.andWhere('d.event_id = :eventId', query);
    return this.page(qb, query, 'DESC');
  }

  /** One delivery, or 404 when it does not exist in this account. */
  async get(accountId: string, id: string): Promise<Delivery> {
    const delivery = await this.tx
      .getRepository(Delivery)
      .findOneBy({ id, accountId });
    if (!delivery) throw new NotFoundException(`Delivery ${id} not found`);
    return delivery;
  }

  /** A delivery's attempts, oldest first. */
  async attempts(
    accountId: string,
    id: string,
    query: PageQueryDto,
  ): Promise<Page<DeliveryAttempt>> {
    await this.get(accountId, id);
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const after = query.cursor ? decodeNumberCursor(query.cursor) : 0;
    const rows = await this.tx
      .getRepository(DeliveryAttempt)
      .createQueryBuilder('a')
      .where('a.delivery_id = :id AND a.number > :after', { id, after })
      .orderBy('a.number', 'ASC')
      .limit(limit + 1)
      .getMany();
    return toPage(
      rows,
      limit,
      (a) => a,
      (a) => a.number,
    );
  }

  /**
   * An event's deliveries, oldest first, each with its latest `INLINE_ATTEMPTS` attempts,
   * read from one snapshot so that a delivery's status and its attempts agree while a
   * worker records an attempt.
   */
  @Transactional({ isolationLevel: 'REPEATABLE READ' })
  async ofEvent(
    accountId: string,
    eventId: string,
    query: PageQueryDto,
  ): Promise<Page<WithAttempts>> {
    const qb = this.tx
      .getRepository(Delivery)
      .createQueryBuilder('d')
      .where('d.account_id = :accountId AND d.event_id = :eventId', {
        accountId,
        eventId,
      });
    const positions = new Map<string, string>();
    const page = await this.page(qb, query, 'ASC', positions);
    // NOTE: octet_length reads a stored (toasted) text's size without reading the text.
    const sizes: { delivery_id: string; bytes: string }[] = page.data.length
      ? await this.tx.manager.query(
          `SELECT delivery_id, sum(coalesce(octet_length(response_body), 0)) AS bytes
             FROM (SELECT delivery_id, response_body,
                          row_number() OVER (PARTITION BY delivery_id ORDER BY number DESC) AS n
                     FROM delivery_attempts WHERE delivery_id = ANY($1)) ranked
            WHERE n <= $2 GROUP BY delivery_id`,
          [page.data.map((d) => d.id), INLINE_ATTEMPTS],
        )
      : [];
    const bytesOf = new Map(sizes.map((r) => [r.delivery_id, Number(r.bytes)]));
    let total = 0;
    let kept = 0;
    for (const delivery of page.data) {
      total += bytesOf.get(delivery.id) ?? 0;
      if (kept > 0 && total > INLINE_RESPONSE_BUDGET) break;
      kept++;
    }
    if (kept < page.data.length) {
      const last = page.data[kept - 1];
      page.data = page.data.slice(0, kept);
      page.nextCursor = encodeCursor({
        at: positions.get(last.id)!,
        id: last.id,
      });
    }
    const ids = page.data.map((d) => d.id);
    const attempts: DeliveryAttempt[] = ids.length
      ? await this.tx
          .getRepository(DeliveryAttempt)
          .createQueryBuilder('a')
          .where(
            `a.id IN (SELECT id FROM (
               SELECT id, row_number() OVER (PARTITION BY delivery_id ORDER BY number DESC) AS n
                 FROM delivery_attempts WHERE delivery_id = ANY(:ids)) ranked
              WHERE n <= :inline)`,
            { ids, inline: INLINE_ATTEMPTS },
          )
          .orderBy('a.number', 'ASC')
          .getMany()
      : [];
    return {
      data: page.data.map((delivery) =>
        Object.assign(delivery, {
          attempts: attempts.filter((a) => a.deliveryId === delivery.id),
        }),
      ),
      nextCursor: page.nextCursor,
    };
  }

  /** Runs a deliveries query as one keyset page on (created_at, id). */
  private async page(
    qb: SelectQueryBuilder<Delivery>,
    query: PageQueryDto,
    direction: 'ASC' | 'DESC',
    /** Filled with each row's position (the text its cursor holds), when given. */
    positionsOut?: Map<string, string>,
  ): Promise<Page<Delivery>> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    if (query.cursor) {
      const after = decodeTimeCursor(query.cursor);
      qb.andWhere(
        `(d.created_at, d.id) ${direction === 'ASC' ? '>' : '<'} (:at::timestamptz, :id::uuid)`,
        after,
      );
    }
    const { entities, raw } = await qb
      .addSelect(positionSql('d.created_at'), 'position')
      .orderBy('d.created_at', direction)
      .addOrderBy('d.id', direction)
      .limit(limit + 1)
      .getRawAndEntities();
    const positions = positionsOut ?? new Map<string, string>();
    for (const r of raw as { d_id: string; position: string }[]) {
      positions.set(r.d_id, r.position);
    }
    return toPage(
      entities,
      limit,
      (d) => d,
      (d) => ({
        at: positions.get(d.id)!,
        id: d.id,
      }),
    );
  }
}
