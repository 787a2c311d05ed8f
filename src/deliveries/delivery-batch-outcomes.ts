import type { EntityManager } from 'typeorm';
import type { SendResult } from '../webhooks-http/send-result';
import type { ClaimedDelivery } from './delivery-claims';
import { storableText } from './storable-text';

/** Longest response body kept in the attempt log. */
export const MAX_STORED_RESPONSE = 64 * 1024;

/** An attempt answered 2xx, to record with others. */
export interface Success {
  claim: ClaimedDelivery;
  result: Extract<SendResult, { kind: 'response' }>;
}

/** Whether a result is a 2xx answer (the outcome {@link recordSuccesses} records). */
export function isSuccess(
  result: SendResult,
): result is Extract<SendResult, { kind: 'response' }> {
  return (
    result.kind === 'response' && result.status >= 200 && result.status < 300
  );
}

/** Locks the endpoints of a batch of outcomes, in id order. */
export const OUTCOME_LOCK_ENDPOINTS_SQL = `SELECT id FROM endpoints
  WHERE id = ANY($1::uuid[]) ORDER BY id FOR KEY SHARE`;

/** Locks the deliveries of a batch of outcomes, by primary key, in id order. */
export const OUTCOME_LOCK_DELIVERIES_SQL = `SELECT id FROM deliveries
  WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`;

/** Records the attempts and finishes the deliveries of a batch of successes. */
export const RECORD_SUCCESSES_SQL = `WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[], $5::text[], $6::bool[])
      AS v(attempt_id, delivery_id, status_code, duration_ms, body, truncated)),
  attempts AS (
    UPDATE delivery_attempts a
       SET status = 'succeeded', status_code = v.status_code, duration_ms = v.duration_ms,
           error_class = NULL, error_message = NULL, response_body = v.body,
           response_truncated = v.truncated, finished_at = now()
      FROM v WHERE a.id = v.attempt_id AND a.id = ANY($1::uuid[]))
  UPDATE deliveries d
     SET status = 'succeeded', last_status_code = v.status_code, last_error = NULL,
         next_attempt_at = NULL, locked_until = NULL, updated_at = now(), completed_at = now()
    FROM v WHERE d.id = v.delivery_id AND d.id = ANY($2::uuid[])`;

/** Ends the failure run of the endpoints that answered 2xx (a write only where one is running). */
export const CLEAR_FAILING_SQL = `UPDATE endpoints SET failing_since = NULL
  WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL`;

/**
 * Records many 2xx attempts in the caller's transaction with a constant number of statements:
 * what `DeliveryOutcomeService.record` writes for a success (the attempt, the delivery
 * succeeded, the endpoint's failure run ended), endpoints locked before deliveries. Resolves
 * with whether each was recorded (false: its endpoint or delivery was deleted meanwhile).
 */
export async function recordSuccesses(
  manager: EntityManager,
  items: Success[],
): Promise<boolean[]> {
  const endpointIds = [...new Set(items.map((i) => i.claim.endpointId))];
  const endpoints: { id: string }[] = await manager.query(
    OUTCOME_LOCK_ENDPOINTS_SQL,
    [endpointIds],
  );
  const liveEndpoints = new Set(endpoints.map((e) => e.id));
  const deliveries: { id: string }[] = await manager.query(
    OUTCOME_LOCK_DELIVERIES_SQL,
    [items.map((i) => i.claim.id)],
  );
  const live = new Set(deliveries.map((d) => d.id));
  const kept = items.filter(
    (i) => live.has(i.claim.id) && liveEndpoints.has(i.claim.endpointId),
  );
  if (kept.length > 0) {
    await manager.query(RECORD_SUCCESSES_SQL, [
      kept.map((i) => i.claim.attemptId),
      kept.map((i) => i.claim.id),
      kept.map((i) => i.result.status),
      kept.map((i) => Math.round(i.result.durationMs)),
      kept.map((i) =>
        storableText(i.result.body.slice(0, MAX_STORED_RESPONSE)),
      ),
      kept.map((i) => i.result.truncated),
    ]);
    await manager.query(CLEAR_FAILING_SQL, [
      [...new Set(kept.map((i) => i.claim.endpointId))],
    ]);
  }
  return items.map((i) => kept.includes(i));
}
