import { Injectable, NotFoundException } from '@nestjs/common';
import { SelectQueryBuilder } from 'typeorm';
import { TransactionHost, Transactional } from 'nestjs-transactional-jobs';
import {
  DEFAULT_PAGE_SIZE,
  Page,
  PageQueryDto,
  decodeNumberCursor,
  decodeTimeCursor,
  positionSql,
  toPage,
} from '../http/pagination';
import { DeliveryAttempt } from './delivery-attempt.entity';
import { Delivery } from './delivery.entity';
import { ListDeliveriesQueryDto } from './dto/list-deliveries.dto';

/** Attempts shown inline with each delivery of an event; all of them: `.../attempts`. */
export const INLINE_ATTEMPTS = 50;

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
    const page = await this.page(qb, query, 'ASC');
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
    const positions = new Map<string, string>(
      raw.map((r: { d_id: string; position: string }) => [r.d_id, r.position]),
    );
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
