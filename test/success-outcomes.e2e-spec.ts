import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  Success,
  recordSuccesses,
} from '../src/deliveries/delivery-batch-outcomes';
import {
  testUuid as uuid,
  useScratchDatabase,
  describeStatementRunners,
} from './support/scratch-database';

const ACCOUNT = uuid(1, 0);
const endpointId = (i: number) => uuid(2, i);
const deliveryId = (i: number) => uuid(4, i);
const attemptId = (i: number) => uuid(5, i);

/** One delivery in flight (`sending`, its attempt `in_progress`), or deleted since its claim. */
interface InFlight {
  endpoint: number;
  deleted: boolean;
}

const scenario = fc.record({
  deliveries: fc.array(
    fc.record<InFlight>({ endpoint: fc.nat(2), deleted: fc.boolean() }),
    { minLength: 1, maxLength: 8 },
  ),
  /** Endpoints in a failure run (`failing_since` set), and one deleted (with its deliveries). */
  failing: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
  deletedEndpoint: fc.option(fc.nat(2), { nil: undefined }),
  /** The deliveries whose 2xx outcome is in the batch, in batch order. */
  picked: fc.array(fc.nat(7), { minLength: 1, maxLength: 8 }),
  status: fc.constantFrom(200, 201, 204, 299),
  body: fc.string({ maxLength: 20 }),
});

describe('recording a batch of 2xx outcomes (one statement)', () => {
  const scratch = useScratchDatabase('outcomes', 4);
  let db: DataSource;
  beforeAll(() => {
    db = scratch();
  });

  describeStatementRunners(scratch, (statements, runs) => {
    it('should record exactly the outcomes whose delivery and endpoint still exist, and nothing else', async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async (s) => {
          await db.query('TRUNCATE accounts CASCADE');
          await db.query(
            `INSERT INTO accounts (id, name, api_key_hash, api_key_prefix)
             VALUES ($1, 'outcomes', md5('outcomes'), 'whk_test')`,
            [ACCOUNT],
          );
          for (let e = 0; e < 3; e++) {
            await db.query(
              `INSERT INTO endpoints (id, account_id, url, secrets, failing_since)
               VALUES ($1, $2, 'https://hooks.example.com/x', '[]',
                       CASE WHEN $3 THEN now() - interval '1 hour' END)`,
              [endpointId(e), ACCOUNT, s.failing[e]],
            );
          }
          for (const [i, d] of s.deliveries.entries()) {
            await db.query(
              `WITH e AS (INSERT INTO events (account_id, type, payload)
                          VALUES ($2, 'trip.delayed', '{}') RETURNING id)
               INSERT INTO deliveries (id, account_id, event_id, endpoint_id, status, attempt_count,
                                       next_attempt_at, locked_until)
               SELECT $1, $2, e.id, $3, 'sending', 1, now(), now() + interval '30 seconds' FROM e`,
              [deliveryId(i), ACCOUNT, endpointId(d.endpoint)],
            );
            await db.query(
              `INSERT INTO delivery_attempts (id, delivery_id, number, trigger, status, started_at)
               VALUES ($1, $2, 1, 'scheduled', 'in_progress', now())`,
              [attemptId(i), deliveryId(i)],
            );
          }
          // Deleted after the claim: the delivery (its attempt goes with it), or the endpoint.
          for (const [i, d] of s.deliveries.entries())
            if (d.deleted)
              await db.query('DELETE FROM deliveries WHERE id = $1', [
                deliveryId(i),
              ]);
          if (s.deletedEndpoint !== undefined)
            await db.query('DELETE FROM endpoints WHERE id = $1', [
              endpointId(s.deletedEndpoint),
            ]);
          const picked = [
            ...new Set(s.picked.filter((i) => i < s.deliveries.length)),
          ];
          const items: Success[] = picked.map((i) => ({
            claim: {
              id: deliveryId(i),
              accountId: ACCOUNT,
              eventId: uuid(9, i),
              endpointId: endpointId(s.deliveries[i].endpoint),
              attemptNumber: 1,
              attemptId: attemptId(i),
              trigger: 'scheduled',
              previousStatus: 'pending',
            },
            result: {
              kind: 'response',
              status: s.status,
              headers: {},
              body: s.body,
              truncated: false,
              durationMs: 3.4,
            },
          }));
          const alive = (i: number) =>
            !s.deliveries[i].deleted &&
            s.deliveries[i].endpoint !== s.deletedEndpoint;

          const results = await recordSuccesses(statements(), items);

          expect(results).toEqual(picked.map(alive));
          const deliveries: { id: string; status: string; code: number }[] =
            await db.query(
              `SELECT id, status, last_status_code AS code FROM deliveries
                WHERE status = 'succeeded' AND locked_until IS NULL
                  AND next_attempt_at IS NULL AND completed_at IS NOT NULL ORDER BY id`,
            );
          expect(deliveries.map((d) => d.id)).toEqual(
            picked.filter(alive).map(deliveryId).sort(),
          );
          expect(deliveries.every((d) => d.code === s.status)).toBe(true);
          const attempts: { id: string }[] = await db.query(
            `SELECT id FROM delivery_attempts
              WHERE status = 'succeeded' AND status_code = $1 AND duration_ms = 3
                AND response_body = $2 AND finished_at IS NOT NULL ORDER BY id`,
            [s.status, s.body],
          );
          expect(attempts.map((a) => a.id)).toEqual(
            picked.filter(alive).map(attemptId).sort(),
          );
          // Everything else is as it was: in flight, its attempt in progress.
          const untouched: { n: number }[] = await db.query(
            `SELECT count(*)::int AS n FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
              WHERE d.status = 'sending' AND a.status = 'in_progress'`,
          );
          expect(untouched[0].n).toBe(
            s.deliveries.filter((_, i) => alive(i) && !picked.includes(i))
              .length,
          );
          // A failure run ends where a 2xx was recorded, and only there.
          const failing: { id: string }[] = await db.query(
            'SELECT id FROM endpoints WHERE failing_since IS NOT NULL ORDER BY id',
          );
          const recovered = new Set(
            picked.filter(alive).map((i) => s.deliveries[i].endpoint),
          );
          expect(failing.map((e) => e.id)).toEqual(
            [0, 1, 2]
              .filter(
                (e) =>
                  s.failing[e] && e !== s.deletedEndpoint && !recovered.has(e),
              )
              .map(endpointId),
          );
        }),
        { numRuns: runs(120) },
      );
    }, 120_000);
  });
});
