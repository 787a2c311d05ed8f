import { Injectable } from '@nestjs/common';
import { TransactionHost } from 'nestjs-transactional-jobs';

/**
 * The oldest due `pending` delivery: by the partial index `deliveries_pending_next` (only
 * pending deliveries are in it), its first entry. No due delivery: no row.
 */
export const OLDEST_DUE_SQL = `SELECT (extract(epoch FROM now() - next_attempt_at) * 1000)::float8 AS age_ms
    FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()
   ORDER BY next_attempt_at LIMIT 1`;

/**
 * How far the workers are behind: the age of the oldest delivery that is due and not sent yet
 * (waiting in the queue, parked for an endpoint slot, or lost and waiting for the reconciler).
 * It grows when more work arrives than the workers send: scale the workers before customers
 * notice (`GET /health/ready` reports it against `READY_MAX_BACKLOG_AGE_MS`).
 */
@Injectable()
export class DeliveryBacklog {
  constructor(private readonly tx: TransactionHost) {}

  /** Age in ms of the oldest due pending delivery; 0 when nothing is due. */
  async oldestDueAgeMs(): Promise<number> {
    const rows: { age_ms: number }[] =
      await this.tx.manager.query(OLDEST_DUE_SQL);
    return rows.length === 0 ? 0 : Math.max(0, Math.round(rows[0].age_ms));
  }
}
