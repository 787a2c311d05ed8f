import { preparedStatement, StatementRunner } from '../database/prepared-query';
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

/**
 * Records a batch of 2xx attempts in one statement (one round trip, its own transaction): locks
 * the endpoints (key share, in id order), then the deliveries of live endpoints (by primary key,
 * in id order: an endpoint is always locked before its deliveries, as a delete takes them), marks
 * the attempts succeeded, the deliveries succeeded, and ends the failure run of the endpoints that
 * had one. An attempt whose delivery or endpoint was deleted meanwhile is not recorded. Returns
 * the ids of the attempts recorded.
 */
export const RECORD_SUCCESSES_SQL = `WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[], $5::text[], $6::bool[],
                         $7::uuid[])
      AS v(attempt_id, delivery_id, status_code, duration_ms, body, truncated, endpoint_id)),
  ep AS MATERIALIZED (
    SELECT id FROM endpoints WHERE id = ANY($7::uuid[]) ORDER BY id FOR KEY SHARE),
  live AS MATERIALIZED (
    SELECT id FROM deliveries WHERE id = ANY($2::uuid[]) AND endpoint_id IN (SELECT id FROM ep)
     ORDER BY id FOR UPDATE),
  kept AS MATERIALIZED (
    SELECT v.* FROM v JOIN live ON live.id = v.delivery_id JOIN ep ON ep.id = v.endpoint_id),
  attempts AS (
    UPDATE delivery_attempts a
       SET status = 'succeeded', status_code = kept.status_code, duration_ms = kept.duration_ms,
           error_class = NULL, error_message = NULL, response_body = kept.body,
           response_truncated = kept.truncated, finished_at = now()
      FROM kept WHERE a.id = kept.attempt_id AND a.id = ANY($1::uuid[])),
  done AS (
    UPDATE deliveries d
       SET status = 'succeeded', last_status_code = kept.status_code, last_error = NULL,
           next_attempt_at = NULL, locked_until = NULL, updated_at = now(), completed_at = now()
      FROM kept WHERE d.id = kept.delivery_id AND d.id = ANY($2::uuid[])),
  recovered AS (
    UPDATE endpoints SET failing_since = NULL
     WHERE id = ANY($7::uuid[]) AND id IN (SELECT endpoint_id FROM kept)
       AND failing_since IS NOT NULL)
  SELECT attempt_id FROM kept`;

/** Ends the failure run of the endpoints that answered 2xx (a write only where one is running). */
export const CLEAR_FAILING_SQL = `UPDATE endpoints SET failing_since = NULL
  WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL`;

const RECORD_SUCCESSES = preparedStatement(
  'record_successes',
  RECORD_SUCCESSES_SQL,
);

/**
 * Records many 2xx attempts with {@link RECORD_SUCCESSES_SQL}: what
 * `DeliveryOutcomeService.record` writes for a success (the attempt, the delivery succeeded, the
 * endpoint's failure run ended). Resolves with whether each was recorded (false: its endpoint or
 * delivery was deleted meanwhile).
 */
export async function recordSuccesses(
  statements: StatementRunner,
  items: Success[],
): Promise<boolean[]> {
  const rows = await statements.run<{ attempt_id: string }>(RECORD_SUCCESSES, [
    items.map((i) => i.claim.attemptId),
    items.map((i) => i.claim.id),
    items.map((i) => i.result.status),
    items.map((i) => Math.round(i.result.durationMs)),
    items.map((i) => storableText(i.result.body.slice(0, MAX_STORED_RESPONSE))),
    items.map((i) => i.result.truncated),
    items.map((i) => i.claim.endpointId),
  ]);
  const recorded = new Set(rows.map((r) => r.attempt_id));
  return items.map((i) => recorded.has(i.claim.attemptId));
}
