import type { EntityManager } from 'typeorm';
import type { AttemptTrigger } from './delivery-attempt.entity';
import type { DeliveryStatus } from './delivery.entity';

/** A delivery this worker now owns for one attempt, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  accountId: string;
  eventId: string;
  endpointId: string;
  attemptNumber: number;
  attemptId: string;
  trigger: AttemptTrigger;
  previousStatus: DeliveryStatus;
  previousNextAttemptAt: Date | null;
}

/**
 * Takes ownership of a delivery for one attempt, or returns undefined when there is nothing to
 * do: already succeeded (idempotent re-run of a job), not due yet, or owned by another worker
 * whose lease has not expired. A lease that has expired belongs to a worker that died; its
 * attempt is marked `interrupted`. Runs in the caller's transaction.
 */
export async function claimDelivery(
  manager: EntityManager,
  deliveryId: string,
  trigger: AttemptTrigger,
  leaseMs: number,
): Promise<ClaimedDelivery | undefined> {
  // NOTE: TypeORM returns [rows, rowCount] for an UPDATE on Postgres.
  const [rows]: [any[], number] = await manager.query(
    `WITH old AS (SELECT id, status, next_attempt_at FROM deliveries WHERE id = $1 FOR UPDATE)
     UPDATE deliveries d
        SET status = 'sending', attempt_count = d.attempt_count + 1, updated_at = now(),
            locked_until = now() + make_interval(secs => $3::float8 / 1000)
       FROM old
      WHERE d.id = old.id
        AND (d.locked_until IS NULL OR d.locked_until < now())
        AND (($2 = 'scheduled' AND d.status IN ('pending', 'sending')
              AND d.next_attempt_at <= now() + interval '1 second')
          OR ($2 = 'manual'))
     RETURNING d.id, d.account_id, d.event_id, d.endpoint_id, d.attempt_count,
               old.status AS previous_status, old.next_attempt_at AS previous_next_attempt_at`,
    [deliveryId, trigger, leaseMs],
  );
  const row = rows[0];
  if (!row) return undefined;
  await manager.query(
    `UPDATE delivery_attempts
        SET status = 'interrupted', finished_at = now(), error_class = 'interrupted',
            error_message = 'the worker stopped during the attempt'
      WHERE delivery_id = $1 AND status = 'in_progress'`,
    [deliveryId],
  );
  const [attempt] = await manager.query(
    `INSERT INTO delivery_attempts (delivery_id, number, trigger, status, started_at)
     VALUES ($1, $2, $3, 'in_progress', now()) RETURNING id`,
    [deliveryId, row.attempt_count, trigger],
  );
  return {
    id: row.id,
    accountId: row.account_id,
    eventId: row.event_id,
    endpointId: row.endpoint_id,
    attemptNumber: row.attempt_count,
    attemptId: attempt.id,
    trigger,
    previousStatus:
      row.previous_status === 'sending' ? 'pending' : row.previous_status,
    previousNextAttemptAt: row.previous_next_attempt_at,
  };
}
