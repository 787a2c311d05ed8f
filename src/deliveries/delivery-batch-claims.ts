import type { EntityManager } from 'typeorm';
import type { StoredEndpointSecret } from '../endpoints/endpoint.entity';
import { StoredEvent, toStoredEvent } from '../events/stored-event';
import type { ClaimedDelivery, ClaimResult } from './delivery-claims';
import type { DeliveryStatus } from './delivery.entity';

/** What an attempt needs of its endpoint, read (and key-share locked) once per batch. */
export interface EndpointTarget {
  id: string;
  url: string;
  disabled: boolean;
  secrets: StoredEndpointSecret[];
}

/** A claim made by {@link claimBatch}, with its event and endpoint already read. */
export interface PreparedClaim extends ClaimedDelivery {
  event: StoredEvent;
  endpoint: EndpointTarget;
}

/** One scheduled claim asked of a batch: the delivery and the endpoint its job names. */
export interface BatchClaimRequest {
  deliveryId: string;
  endpointId: string;
}

/** The result of one request of a batch; `fallback`: claim it alone (see `claimDelivery`). */
export type BatchClaimResult =
  | (ClaimResult & { kind: 'gave_up' | 'busy' | 'skipped' })
  | { kind: 'claimed'; claim: PreparedClaim; interrupted: number }
  | { kind: 'fallback' };

/** An endpoint as a request is built from it ($1 id): read again for a claim taken ahead. */
export const ENDPOINT_TARGET_SQL = `SELECT id, url, disabled, secrets FROM endpoints WHERE id = $1`;

/** Locks the endpoints of a batch, in id order (the order a delete of several would take). */
export const BATCH_LOCK_ENDPOINTS_SQL = `SELECT id, url, disabled, secrets FROM endpoints
  WHERE id = ANY($1::uuid[]) ORDER BY id FOR KEY SHARE`;

/** Locks the deliveries of a batch (by primary key only) and reads what a claim decides on. */
export const BATCH_LOCK_DELIVERIES_SQL = `SELECT d.id, d.account_id, d.event_id, d.endpoint_id, d.status,
         d.attempt_count,
         (d.locked_until IS NULL OR d.locked_until < now()) AS lease_free,
         (d.next_attempt_at <= now() + interval '1 second') IS TRUE AS due,
         (SELECT count(*)::int FROM delivery_attempts a
           WHERE a.delivery_id = d.id AND a.trigger = 'scheduled') AS scheduled_attempts
    FROM deliveries d WHERE d.id = ANY($1::uuid[]) ORDER BY d.id FOR UPDATE OF d`;

/** Marks the abandoned attempts of the batch's deliveries interrupted. */
export const BATCH_INTERRUPT_SQL = `UPDATE delivery_attempts
    SET status = 'interrupted', finished_at = now(), error_class = 'interrupted',
        error_message = 'the outcome of this attempt was never recorded (the worker stopped or could not write it)'
  WHERE delivery_id = ANY($1::uuid[]) AND status = 'in_progress'
  RETURNING delivery_id`;

/** Takes the leases and writes the attempt rows of every claimed delivery in one statement. */
export const BATCH_CLAIM_SQL = `WITH claimed AS (
    UPDATE deliveries SET status = 'sending', attempt_count = attempt_count + 1, updated_at = now(),
           locked_until = now() + make_interval(secs => $2::float8 / 1000)
     WHERE id = ANY($1::uuid[]) RETURNING id, attempt_count)
  INSERT INTO delivery_attempts (delivery_id, number, trigger, status, started_at)
  SELECT id, attempt_count, 'scheduled', 'in_progress', now() FROM claimed
  RETURNING id, delivery_id, number`;

/**
 * Ends the abandoned manual attempts of the deliveries $1: `sending` with the lease expired and
 * not due (a manual claim leaves `next_attempt_at` as it was: NULL for a final delivery). The
 * delivery goes back to the status the manual claim found: `pending` with its next scheduled
 * attempt, else `succeeded` if an attempt succeeded, else `failed`.
 */
export const RESTORE_ABANDONED_MANUAL_SQL = `UPDATE deliveries d
    SET status = CASE
          WHEN d.next_attempt_at IS NOT NULL THEN 'pending'
          WHEN EXISTS (SELECT 1 FROM delivery_attempts a
                        WHERE a.delivery_id = d.id AND a.status = 'succeeded') THEN 'succeeded'
          ELSE 'failed' END,
        locked_until = NULL, updated_at = now()
  WHERE d.id = ANY($1::uuid[]) AND d.status = 'sending'`;

/** The events of a batch. */
export const BATCH_EVENTS_SQL = `SELECT id, type, payload::text AS payload_text, created_at
  FROM events WHERE id = ANY($1::uuid[])`;

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

/**
 * `claimDelivery` for many scheduled jobs at once, in the caller's transaction: the same
 * decisions (final, not due, leased by another worker, at the attempt limit), with the
 * endpoints locked before the deliveries, a constant number of statements per batch, and
 * each claimed delivery's event and endpoint read in the same batch. A request whose
 * delivery belongs to another endpoint than its job says is answered `fallback`.
 */
export async function claimBatch(
  manager: EntityManager,
  requests: BatchClaimRequest[],
  leaseMs: number,
  maxScheduledAttempts: number,
): Promise<BatchClaimResult[]> {
  const endpointIds = [...new Set(requests.map((r) => r.endpointId))];
  const endpoints: EndpointTarget[] = await manager.query(
    BATCH_LOCK_ENDPOINTS_SQL,
    [endpointIds],
  );
  const endpointById = new Map(endpoints.map((e) => [e.id, e]));
  const ids = [...new Set(requests.map((r) => r.deliveryId))];
  const rows: LockedRow[] = await manager.query(BATCH_LOCK_DELIVERIES_SQL, [
    ids,
  ]);
  const rowById = new Map(rows.map((r) => [r.id, r]));
  const decided = new Map<string, BatchClaimResult>();
  const toClaim: LockedRow[] = [];
  const toFail: LockedRow[] = [];
  const toRestore: LockedRow[] = [];
  for (const id of ids) {
    const row = rowById.get(id);
    const request = requests.find((r) => r.deliveryId === id)!;
    if (!row) decided.set(id, { kind: 'skipped' });
    else if (row.endpoint_id !== request.endpointId)
      decided.set(id, { kind: 'fallback' });
    else if (!endpointById.has(row.endpoint_id))
      decided.set(id, { kind: 'skipped' });
    else if (!row.lease_free) decided.set(id, { kind: 'busy' });
    else if (row.status === 'sending' && !row.due) {
      toRestore.push(row);
      decided.set(id, { kind: 'skipped' });
    } else if (
      !((row.status === 'pending' || row.status === 'sending') && row.due)
    )
      decided.set(id, { kind: 'skipped' });
    else if (row.scheduled_attempts >= maxScheduledAttempts) toFail.push(row);
    else toClaim.push(row);
  }
  const interrupted = new Map<string, number>();
  const touched = [...toClaim, ...toFail, ...toRestore].filter(
    (r) => r.status === 'sending',
  );
  if (touched.length > 0) {
    const [marked]: [{ delivery_id: string }[], number] = await manager.query(
      BATCH_INTERRUPT_SQL,
      [touched.map((r) => r.id)],
    );
    for (const { delivery_id } of marked)
      interrupted.set(delivery_id, (interrupted.get(delivery_id) ?? 0) + 1);
  }
  if (toRestore.length > 0) {
    await manager.query(RESTORE_ABANDONED_MANUAL_SQL, [
      toRestore.map((r) => r.id),
    ]);
  }
  for (const row of toFail) {
    await manager.query(
      `UPDATE deliveries
          SET status = 'failed', locked_until = NULL, next_attempt_at = NULL,
              completed_at = now(), updated_at = now(), last_error = $2
        WHERE id = $1`,
      [
        row.id,
        `stopped at the attempt limit (${maxScheduledAttempts} scheduled attempts) without a ` +
          'recorded outcome for the last one; retry the delivery to send it again',
      ],
    );
    decided.set(row.id, {
      kind: 'gave_up',
      attempts: row.scheduled_attempts,
      interrupted: interrupted.get(row.id) ?? 0,
    });
  }
  if (toClaim.length > 0) {
    const claimIds = toClaim.map((r) => r.id);
    const [attempts, events]: [
      { id: string; delivery_id: string; number: number }[],
      Parameters<typeof toStoredEvent>[0][],
    ] = await Promise.all([
      manager.query(BATCH_CLAIM_SQL, [claimIds, leaseMs]),
      manager.query(BATCH_EVENTS_SQL, [
        [...new Set(toClaim.map((r) => r.event_id))],
      ]),
    ]);
    const attemptOf = new Map(attempts.map((a) => [a.delivery_id, a]));
    const eventById = new Map(events.map((e) => [e.id, toStoredEvent(e)]));
    for (const row of toClaim) {
      const attempt = attemptOf.get(row.id)!;
      const event = eventById.get(row.event_id);
      if (!event) throw new Error(`event ${row.event_id} not found`);
      decided.set(row.id, {
        kind: 'claimed',
        interrupted: interrupted.get(row.id) ?? 0,
        claim: {
          id: row.id,
          accountId: row.account_id,
          eventId: row.event_id,
          endpointId: row.endpoint_id,
          attemptNumber: attempt.number,
          attemptId: attempt.id,
          trigger: 'scheduled',
          previousStatus: row.status === 'sending' ? 'pending' : row.status,
          event,
          endpoint: endpointById.get(row.endpoint_id)!,
        },
      });
    }
  }
  // A delivery asked twice in one batch (a duplicate job) is claimed once: the other is busy.
  const seen = new Set<string>();
  return requests.map((r) => {
    if (seen.has(r.deliveryId)) return { kind: 'busy' };
    seen.add(r.deliveryId);
    return decided.get(r.deliveryId)!;
  });
}
