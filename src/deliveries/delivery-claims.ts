import type { EntityManager } from 'typeorm';
import { RESTORE_ABANDONED_MANUAL_SQL } from './delivery-batch-claims';
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
}

/**
 * What {@link claimDelivery} did. `interrupted` counts attempts it found abandoned; `busy`:
 * another worker holds the delivery's lease (an attempt is being sent now).
 */
export type ClaimResult =
  | { kind: 'claimed'; claim: ClaimedDelivery; interrupted: number }
  | { kind: 'gave_up'; attempts: number; interrupted: number }
  | { kind: 'busy' }
  | { kind: 'skipped' };

interface LockedRow {
  id: string;
  account_id: string;
  event_id: string;
  endpoint_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  lease_free: boolean;
  due: boolean;
  scheduled_attempts: number;
}

/** Locks a delivery ($1) and reads what a claim decides on, scheduled attempts included. */
export const CLAIM_SQL = `SELECT d.id, d.account_id, d.event_id, d.endpoint_id, d.status, d.attempt_count,
            (d.locked_until IS NULL OR d.locked_until < now()) AS lease_free,
            (d.next_attempt_at <= now() + interval '1 second') IS TRUE AS due,
            (SELECT count(*)::int FROM delivery_attempts a
              WHERE a.delivery_id = d.id AND a.trigger = 'scheduled') AS scheduled_attempts
       FROM deliveries d WHERE d.id = $1 FOR UPDATE OF d`;

/**
 * Takes ownership of a delivery for one attempt, or does nothing: already final (idempotent
 * re-run of a job), not due yet, or owned by another worker whose lease has not expired. A
 * lease that has expired belongs to a worker that died or could not record its outcome; its
 * attempt is marked `interrupted`.
 *
 * The attempt limit is enforced here, in Postgres, before anything is sent: a scheduled claim
 * of a delivery that already has `maxScheduledAttempts` scheduled attempts fails the delivery
 * instead. Whatever keeps outcomes from being recorded, a delivery is sent a bounded number of
 * times. Runs in the caller's transaction.
 *
 * `onlyIfFailedAt` (recover): claims only a delivery still `failed` with exactly that many
 * attempts, i.e. not re-sent by anyone since the recover call saw it; two recover calls (or a
 * recover job run twice) re-send it once, and never one that succeeded meanwhile.
 */
export async function claimDelivery(
  manager: EntityManager,
  deliveryId: string,
  trigger: AttemptTrigger,
  leaseMs: number,
  maxScheduledAttempts: number,
  onlyIfFailedAt?: number,
): Promise<ClaimResult> {
  // NOTE: the endpoint is locked before the delivery, in the order in which deleting an
  // endpoint locks them (endpoint, then its deliveries by cascade): the two never deadlock,
  // and a delivery whose endpoint is being deleted is not claimed.
  const endpoint: unknown[] = await manager.query(
    `SELECT 1 FROM endpoints
      WHERE id = (SELECT endpoint_id FROM deliveries WHERE id = $1) FOR KEY SHARE`,
    [deliveryId],
  );
  if (endpoint.length === 0) return { kind: 'skipped' };
  const [row]: LockedRow[] = await manager.query(CLAIM_SQL, [deliveryId]);
  if (!row) return { kind: 'skipped' };
  if (
    onlyIfFailedAt !== undefined &&
    !(row.status === 'failed' && row.attempt_count === onlyIfFailedAt)
  )
    return { kind: 'skipped' };
  if (!row.lease_free) return { kind: 'busy' };
  const active = row.status === 'pending' || row.status === 'sending';
  if (trigger === 'scheduled' && row.status === 'sending' && !row.due) {
    // An abandoned manual attempt (see RESTORE_ABANDONED_MANUAL_SQL).
    await manager.query(
      `UPDATE delivery_attempts
          SET status = 'interrupted', finished_at = now(), error_class = 'interrupted',
              error_message = 'the outcome of this attempt was never recorded (the worker stopped or could not write it)'
        WHERE delivery_id = $1 AND status = 'in_progress'`,
      [deliveryId],
    );
    await manager.query(RESTORE_ABANDONED_MANUAL_SQL, [[deliveryId]]);
    return { kind: 'skipped' };
  }
  if (trigger === 'scheduled' && !(active && row.due))
    return { kind: 'skipped' };
  // NOTE: TypeORM returns [rows, rowCount] for an UPDATE on Postgres.
  const [, interrupted]: [unknown, number] = await manager.query(
    `UPDATE delivery_attempts
        SET status = 'interrupted', finished_at = now(), error_class = 'interrupted',
            error_message = 'the outcome of this attempt was never recorded (the worker stopped or could not write it)'
      WHERE delivery_id = $1 AND status = 'in_progress'`,
    [deliveryId],
  );
  if (
    trigger === 'scheduled' &&
    row.scheduled_attempts >= maxScheduledAttempts
  ) {
    await manager.query(
      `UPDATE deliveries
          SET status = 'failed', locked_until = NULL, next_attempt_at = NULL,
              completed_at = now(), updated_at = now(), last_error = $2
        WHERE id = $1`,
      [
        deliveryId,
        `stopped at the attempt limit (${maxScheduledAttempts} scheduled attempts) without a ` +
          'recorded outcome for the last one; retry the delivery to send it again',
      ],
    );
    return { kind: 'gave_up', attempts: row.scheduled_attempts, interrupted };
  }
  const [[updated]]: [{ attempt_count: number }[], number] =
    await manager.query(
      `UPDATE deliveries
          SET status = 'sending', attempt_count = attempt_count + 1, updated_at = now(),
              locked_until = now() + make_interval(secs => $2::float8 / 1000)
        WHERE id = $1 RETURNING attempt_count`,
      [deliveryId, leaseMs],
    );
  const [attempt] = await manager.query(
    `INSERT INTO delivery_attempts (delivery_id, number, trigger, status, started_at)
     VALUES ($1, $2, $3, 'in_progress', now()) RETURNING id`,
    [deliveryId, updated.attempt_count, trigger],
  );
  return {
    kind: 'claimed',
    interrupted,
    claim: {
      id: row.id,
      accountId: row.account_id,
      eventId: row.event_id,
      endpointId: row.endpoint_id,
      attemptNumber: updated.attempt_count,
      attemptId: attempt.id,
      trigger,
      previousStatus: row.status === 'sending' ? 'pending' : row.status,
    },
  };
}
