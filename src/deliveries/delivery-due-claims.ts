import type { TransactionHost } from 'nestjs-transactional-jobs';
import { preparedStatement, StatementRunner } from '../database/prepared-query';
import { toStoredEvent } from '../events/stored-event';
import {
  BatchClaimRequest,
  BatchClaimResult,
  EndpointTarget,
  claimBatch,
} from './delivery-batch-claims';

/**
 * Claims, in one statement (so one round trip and its own transaction), the deliveries of a
 * batch that {@link claimBatch} would claim without anything else to do: `pending`, due, the
 * lease free, under the attempt limit ($4 scheduled attempts), of the endpoint their job names
 * ($1/$2 pairs), with their event (there is one: a delivery's event is a foreign key, and the
 * delivery's lock holds off its deletion). Endpoints are locked (key share) before deliveries, as in
 * `claimBatch`: the deliveries are filtered on the locked endpoints, so every endpoint is locked
 * before the first delivery is. The deliveries are locked by primary key alone and the
 * conditions checked on the locked rows (their latest version: a claim by another worker made
 * it `sending`, and it is left out); a status predicate in the locking scan would let the
 * planner pick the partial index of pending deliveries and scan every due row. Returns
 * each claimed delivery with its attempt, event and endpoint; the others are left untouched,
 * for `claimBatch` (an interrupted attempt to mark, a delivery to fail at the attempt limit,
 * busy, final or not due).
 */
export const CLAIM_DUE_SQL = `WITH ep AS MATERIALIZED (
    SELECT id, url, disabled, secrets FROM endpoints
     WHERE id = ANY($2::uuid[]) ORDER BY id FOR KEY SHARE),
  locked AS MATERIALIZED (
    SELECT d.id, d.account_id, d.event_id, d.endpoint_id, d.status, d.next_attempt_at,
           d.locked_until
      FROM unnest($1::uuid[], $2::uuid[]) AS r(delivery_id, endpoint_id)
      JOIN deliveries d ON d.id = r.delivery_id AND d.endpoint_id = r.endpoint_id
     WHERE d.id = ANY($1::uuid[]) AND d.endpoint_id IN (SELECT id FROM ep)
     ORDER BY d.id FOR UPDATE OF d),
  due AS MATERIALIZED (
    SELECT l.* FROM locked l
     WHERE l.status = 'pending'
       AND (l.locked_until IS NULL OR l.locked_until < now())
       AND l.next_attempt_at <= now() + interval '1 second'
       AND (SELECT count(*) FROM delivery_attempts a
             WHERE a.delivery_id = l.id AND a.trigger = 'scheduled') < $4),
  claimed AS (
    UPDATE deliveries SET status = 'sending', attempt_count = attempt_count + 1, updated_at = now(),
           locked_until = now() + make_interval(secs => $3::float8 / 1000)
      FROM due WHERE deliveries.id = due.id AND deliveries.id = ANY($1::uuid[])
    RETURNING deliveries.id, deliveries.attempt_count),
  attempts AS (
    INSERT INTO delivery_attempts (delivery_id, number, trigger, status, started_at)
    SELECT id, attempt_count, 'scheduled', 'in_progress', now() FROM claimed
    RETURNING id, delivery_id, number)
  SELECT l.id, l.account_id, l.event_id, l.endpoint_id,
         a.id AS attempt_id, a.number, e.type, e.payload::text AS payload_text, e.created_at,
         ep.url, ep.disabled, ep.secrets
    FROM due l
    JOIN attempts a ON a.delivery_id = l.id
    JOIN events e ON e.id = l.event_id
    JOIN ep ON ep.id = l.endpoint_id`;

const CLAIM_DUE = preparedStatement('claim_due', CLAIM_DUE_SQL);

interface DueRow {
  id: string;
  account_id: string;
  event_id: string;
  endpoint_id: string;
  attempt_id: string;
  number: number;
  type: string;
  payload_text: string;
  created_at: Date;
  url: string;
  disabled: boolean;
  secrets: EndpointTarget['secrets'];
}

/**
 * The claims {@link CLAIM_DUE_SQL} makes for `requests` (each delivery asked once), by
 * delivery id. Runs outside any transaction, on `statements`: the statement is its own.
 */
export async function claimDue(
  statements: StatementRunner,
  requests: readonly BatchClaimRequest[],
  leaseMs: number,
  maxScheduledAttempts: number,
): Promise<Map<string, BatchClaimResult>> {
  const rows = await statements.run<DueRow>(CLAIM_DUE, [
    requests.map((r) => r.deliveryId),
    requests.map((r) => r.endpointId),
    leaseMs,
    maxScheduledAttempts,
  ]);
  return new Map(
    rows.map((row) => [
      row.id,
      {
        kind: 'claimed',
        interrupted: 0,
        claim: {
          id: row.id,
          accountId: row.account_id,
          eventId: row.event_id,
          endpointId: row.endpoint_id,
          attemptNumber: row.number,
          attemptId: row.attempt_id,
          trigger: 'scheduled',
          previousStatus: 'pending',
          event: toStoredEvent({
            id: row.event_id,
            type: row.type,
            payload_text: row.payload_text,
            created_at: row.created_at,
          }),
          endpoint: {
            id: row.endpoint_id,
            url: row.url,
            disabled: row.disabled,
            secrets: row.secrets,
          },
        },
      },
    ]),
  );
}

/**
 * Claims a batch of scheduled jobs: the common case (pending, due, free) in one statement
 * ({@link claimDue}, on `statements`), the rest with {@link claimBatch} in a transaction, which reads them again
 * and decides (interrupted attempts, the attempt limit, busy, final). The same results as
 * `claimBatch` alone, in request order: a delivery asked twice is claimed once, the other
 * request answered `busy`.
 */
export async function claimScheduledBatch(
  tx: Pick<TransactionHost, 'manager' | 'withTransaction'>,
  statements: StatementRunner,
  requests: readonly BatchClaimRequest[],
  leaseMs: number,
  maxScheduledAttempts: number,
): Promise<BatchClaimResult[]> {
  const firstAsked = new Map<string, BatchClaimRequest>();
  for (const r of requests)
    if (!firstAsked.has(r.deliveryId)) firstAsked.set(r.deliveryId, r);
  const claimed = await claimDue(
    statements,
    [...firstAsked.values()],
    leaseMs,
    maxScheduledAttempts,
  );
  const rest = requests.filter((r) => !claimed.has(r.deliveryId));
  const decided =
    rest.length === 0
      ? []
      : await tx.withTransaction(() =>
          claimBatch(tx.manager, rest, leaseMs, maxScheduledAttempts),
        );
  const seen = new Set<string>();
  let next = 0;
  return requests.map((r) => {
    const result = claimed.get(r.deliveryId);
    if (!result) return decided[next++];
    if (seen.has(r.deliveryId)) return { kind: 'busy' };
    seen.add(r.deliveryId);
    return result;
  });
}
