import fc from 'fast-check';
import { DataSource, EntityManager } from 'typeorm';
import {
  BatchClaimRequest,
  BatchClaimResult,
  claimBatch,
} from '../src/deliveries/delivery-batch-claims';
import { claimScheduledBatch } from '../src/deliveries/delivery-due-claims';
import {
  testUuid as uuid,
  useScratchDatabase,
  describeStatementRunners,
} from './support/scratch-database';

/** Scheduled attempts a delivery may have (the worker's `WEBHOOK_RETRY_SCHEDULE_MS` length). */
const MAX_ATTEMPTS = 3;
const LEASE_MS = 30_000;

type Status = 'pending' | 'sending' | 'succeeded' | 'failed';

/** One delivery of a generated state. */
interface DeliverySpec {
  endpoint: number;
  status: Status;
  /** Seconds from now: due long ago, due within the claim's 1 s slack, not due. */
  nextAttemptIn: -10 | 0.5 | 60 | null;
  /** Seconds from now, or no lease. */
  leaseIn: -10 | 60 | null;
  scheduledAttempts: number;
  /** Whether the last attempt is still `in_progress` (a worker that stopped). */
  abandoned: boolean;
}

/** A request of a batch: a delivery (or one that does not exist), with its endpoint or another. */
interface RequestSpec {
  delivery: number;
  endpoint: number;
}

const deliverySpec = fc.record<DeliverySpec>({
  endpoint: fc.nat(2),
  status: fc.constantFrom<Status>('pending', 'sending', 'succeeded', 'failed'),
  nextAttemptIn: fc.constantFrom<DeliverySpec['nextAttemptIn']>(
    -10,
    0.5,
    60,
    null,
  ),
  leaseIn: fc.constantFrom<DeliverySpec['leaseIn']>(-10, 60, null),
  scheduledAttempts: fc.nat(MAX_ATTEMPTS),
  abandoned: fc.boolean(),
});

/** Deliveries, requests over them (repeats and unknown ids included), an endpoint deleted. */
const scenario = fc
  .array(deliverySpec, { minLength: 1, maxLength: 8 })
  .chain((deliveries) =>
    fc.record({
      deliveries: fc.constant(deliveries),
      requests: fc.array(
        fc.record<RequestSpec>({
          delivery: fc.nat(deliveries.length), // `length`: a delivery that does not exist
          endpoint: fc.nat(3), // 3: an endpoint that does not exist
        }),
        { minLength: 1, maxLength: 10 },
      ),
      // Requests name the delivery's own endpoint most of the time, as jobs do.
      ownEndpoint: fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
      deletedEndpoint: fc.option(fc.nat(2), { nil: undefined }),
    }),
  );

const ACCOUNT = uuid(1, 0);
const endpointId = (i: number) => uuid(2, i);
const eventId = (i: number) => uuid(3, i);
const deliveryId = (i: number) => uuid(4, i);

/** Writes a generated state (every table emptied first). */
async function seed(
  db: DataSource,
  deliveries: DeliverySpec[],
  deletedEndpoint: number | undefined,
) {
  await db.query('TRUNCATE accounts CASCADE');
  await db.query(
    `INSERT INTO accounts (id, name, api_key_hash, api_key_prefix)
     VALUES ($1, 'claims', md5('claims'), 'whk_test')`,
    [ACCOUNT],
  );
  for (let e = 0; e < 3; e++) {
    if (e === deletedEndpoint) continue;
    await db.query(
      `INSERT INTO endpoints (id, account_id, url, secrets)
       VALUES ($1, $2, 'https://hooks.example.com/' || $3::text, '[]')`,
      [endpointId(e), ACCOUNT, e],
    );
  }
  for (const [i, d] of deliveries.entries()) {
    if (d.endpoint === deletedEndpoint) continue;
    await db.query(
      `INSERT INTO events (id, account_id, type, payload)
       VALUES ($1, $2, 'trip.delayed', '{"n": 1}')`,
      [eventId(i), ACCOUNT],
    );
    await db.query(
      `INSERT INTO deliveries (id, account_id, event_id, endpoint_id, status, attempt_count,
                               next_attempt_at, locked_until)
       VALUES ($1, $2, $3, $4, $5, $6,
               now() + make_interval(secs => $7::float8), now() + make_interval(secs => $8::float8))`,
      [
        deliveryId(i),
        ACCOUNT,
        eventId(i),
        endpointId(d.endpoint),
        d.status,
        d.scheduledAttempts,
        d.nextAttemptIn,
        d.leaseIn,
      ],
    );
    for (let n = 1; n <= d.scheduledAttempts; n++) {
      const open = d.abandoned && n === d.scheduledAttempts;
      await db.query(
        `INSERT INTO delivery_attempts (delivery_id, number, trigger, status, started_at)
         VALUES ($1, $2, 'scheduled', $3, now())`,
        [deliveryId(i), n, open ? 'in_progress' : 'failed'],
      );
    }
  }
}

/** What a claim left in Postgres, without generated ids and times. */
async function stateOf(m: EntityManager | DataSource) {
  const deliveries = await m.query(
    `SELECT id, status, attempt_count, locked_until > now() AS leased,
            next_attempt_at IS NULL AS no_next, last_error IS NOT NULL AS has_error
       FROM deliveries ORDER BY id`,
  );
  const attempts = await m.query(
    `SELECT delivery_id, number, trigger, status, error_class
       FROM delivery_attempts ORDER BY delivery_id, number, status`,
  );
  return { deliveries, attempts };
}

/** A result as compared: the claim without its generated attempt id. */
function comparable(result: BatchClaimResult) {
  if (result.kind !== 'claimed') return result;
  const { attemptId, event, endpoint, ...claim } = result.claim;
  return {
    kind: result.kind,
    interrupted: result.interrupted,
    attemptIdSet: typeof attemptId === 'string',
    claim,
    event: { id: event.id, type: event.type, payloadText: event.payloadText },
    endpoint: {
      id: endpoint.id,
      url: endpoint.url,
      disabled: endpoint.disabled,
    },
  };
}

/** `TransactionHost`'s two members the claim uses, on a plain DataSource. */
function hostOf(db: DataSource) {
  let current: EntityManager | undefined;
  return {
    get manager() {
      return current ?? db.manager;
    },
    withTransaction: <T>(fn: () => Promise<T>) =>
      db.transaction(async (m) => {
        current = m;
        try {
          return await fn();
        } finally {
          current = undefined;
        }
      }),
  };
}

describe('claiming a batch of scheduled jobs (the one-statement path)', () => {
  const scratch = useScratchDatabase('claims', 6);
  let db: DataSource;
  beforeAll(() => {
    db = scratch();
  });

  describeStatementRunners(scratch, (statements, runs) => {
    it('should decide and write exactly what the transactional claim does, for any state', async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async (s) => {
          await seed(db, s.deliveries, s.deletedEndpoint);
          const requests: BatchClaimRequest[] = s.requests.map((r, i) => ({
            deliveryId: deliveryId(r.delivery),
            endpointId: endpointId(
              r.delivery < s.deliveries.length && s.ownEndpoint[i]
                ? s.deliveries[r.delivery].endpoint
                : r.endpoint,
            ),
          }));
          // The model: the transactional claim, rolled back after its effects are read.
          const model = await db
            .transaction(async (m) => {
              const results = await claimBatch(
                m,
                requests,
                LEASE_MS,
                MAX_ATTEMPTS,
              );
              throw { results, state: await stateOf(m) };
            })
            .catch(
              (thrown: { results: BatchClaimResult[]; state: unknown }) =>
                thrown,
            );
          const results = await claimScheduledBatch(
            hostOf(db),
            statements(),
            requests,
            LEASE_MS,
            MAX_ATTEMPTS,
          );
          expect(results.map(comparable)).toEqual(
            model.results.map(comparable),
          );
          expect(await stateOf(db)).toEqual(model.state);
        }),
        { numRuns: runs(150) },
      );
    }, 120_000);

    it('should claim each delivery once when batches race for the same ones', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(fc.nat(11), { minLength: 1, maxLength: 8 }), {
            minLength: 2,
            maxLength: 5,
          }),
          async (batches) => {
            const pending = Array.from({ length: 12 }, () => ({
              endpoint: 0,
              status: 'pending' as const,
              nextAttemptIn: -10 as const,
              leaseIn: null,
              scheduledAttempts: 0,
              abandoned: false,
            }));
            await seed(db, pending, undefined);
            const results = await Promise.all(
              batches.map((batch) =>
                claimScheduledBatch(
                  hostOf(db),
                  statements(),
                  batch.map((i) => ({
                    deliveryId: deliveryId(i),
                    endpointId: endpointId(0),
                  })),
                  LEASE_MS,
                  MAX_ATTEMPTS,
                ),
              ),
            );
            const claimed = results
              .flat()
              .filter((r) => r.kind === 'claimed')
              .map((r) => (r.kind === 'claimed' ? r.claim.id : ''));
            const asked = new Set(batches.flat().map(deliveryId));
            // Every delivery asked was claimed by exactly one batch, and the rest were busy.
            expect([...claimed].sort()).toEqual([...asked].sort());
            expect(
              results
                .flat()
                .every((r) => r.kind === 'claimed' || r.kind === 'busy'),
            ).toBe(true);
            const attempts: { delivery_id: string; n: number }[] =
              await db.query(
                `SELECT delivery_id, count(*)::int AS n FROM delivery_attempts GROUP BY 1`,
              );
            expect(attempts.every((a) => a.n === 1)).toBe(true);
            expect(attempts.length).toBe(asked.size);
          },
        ),
        { numRuns: runs(40) },
      );
    }, 120_000);
  });
});
