/**
 * The state machine of one delivery, as claims and recorded outcomes move it, checked against a
 * model with generated sequences of scheduled and manual attempts, their outcomes (2xx, 410,
 * 500, timeout, or the endpoint found disabled) and re-enabling the endpoint. The worker is off
 * (`role: 'api'`): each step claims and records the way the worker does, on the real database.
 *
 * What the model says (README: the retry schedule, `POST /v1/deliveries/:id/retry`):
 * - a scheduled attempt follows the schedule: it is claimed only while the delivery is pending;
 *   its failure schedules the next one until the schedule's entries are used up, then the
 *   delivery fails; a 410 (or the endpoint found disabled) fails it at once;
 * - a manual attempt is one attempt more, on top of the schedule: it never uses a scheduled
 *   one up, and unless it succeeds it leaves the delivery's status and next scheduled attempt
 *   as they were;
 * - after every step: a pending delivery has a next attempt (nothing else would ever send it or
 *   fail it), a final one has none and has `completed_at`, no lease is left, and the attempts
 *   are numbered 1..n with none in progress.
 */
import fc from 'fast-check';
import type { DataSource } from 'typeorm';
import { claimDelivery } from '../src/deliveries/delivery-claims';
import { DeliveryOutcomeService } from '../src/deliveries/delivery-outcome.service';
import type { SendResult } from '../src/webhooks-http/send-result';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';

jest.setTimeout(120_000);

/** Scheduled attempts a delivery gets (the schedule's length); every step due at once. */
const SCHEDULE_MS = [0, 0, 0, 0];
const LEASE_MS = 60_000;

type Outcome = 'ok' | 'gone' | 'error' | 'timeout';
type Step =
  | { kind: 'attempt'; trigger: 'scheduled' | 'manual'; outcome: Outcome }
  | { kind: 'enable' };

interface Model {
  status: 'pending' | 'succeeded' | 'failed';
  scheduled: number;
  attempts: number;
  disabled: boolean;
  /** Whether `next_attempt_at` is set. */
  hasNext: boolean;
}

interface Row {
  status: string;
  next_attempt_at: string | null;
  locked_until: string | null;
  completed_at: string | null;
  disabled: boolean;
}

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('attempt' as const),
      trigger: fc.constantFrom('scheduled' as const, 'manual' as const),
      outcome: fc.constantFrom<Outcome>('ok', 'gone', 'error', 'timeout'),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'enable' as const }) },
);

function sent(outcome: Outcome): SendResult {
  if (outcome === 'timeout')
    return {
      kind: 'error',
      errorClass: 'timeout',
      message: 'timed out',
      durationMs: 5,
    };
  const status = outcome === 'ok' ? 200 : outcome === 'gone' ? 410 : 500;
  return {
    kind: 'response',
    status,
    headers: {},
    body: String(status),
    durationMs: 5,
    truncated: false,
  };
}

/** What the model expects of a step; `claimed` is false when the claim must skip. */
function apply(model: Model, s: Step): { claimed: boolean } {
  if (s.kind === 'enable') {
    model.disabled = false;
    return { claimed: false };
  }
  const manual = s.trigger === 'manual';
  if (!manual && model.status !== 'pending') return { claimed: false };
  model.attempts++;
  if (!manual) model.scheduled++;
  if (model.disabled) {
    if (!manual) Object.assign(model, { status: 'failed', hasNext: false });
    return { claimed: true };
  }
  if (s.outcome === 'ok') {
    Object.assign(model, { status: 'succeeded', hasNext: false });
  } else if (s.outcome === 'gone') {
    model.disabled = true;
    if (!manual) Object.assign(model, { status: 'failed', hasNext: false });
  } else if (!manual) {
    const left = model.scheduled < SCHEDULE_MS.length;
    Object.assign(model, {
      status: left ? 'pending' : 'failed',
      hasNext: left,
    });
  }
  return { claimed: true };
}

describe('a delivery as claims and outcomes move it (model)', () => {
  let svc: E2eApp;
  let ds: DataSource;
  let outcomes: DeliveryOutcomeService;
  let client: ReturnType<typeof deliveryApi>;

  beforeAll(async () => {
    svc = await startE2eApp({
      role: 'api',
      retryScheduleMs: SCHEDULE_MS,
      endpointDisableAfterMs: 24 * 3_600_000,
    });
    ds = svc.dataSource;
    outcomes = svc.app.get(DeliveryOutcomeService);
    client = deliveryApi(svc, await svc.createAccount('outcome-model'));
  });

  afterAll(async () => {
    await svc?.close();
  });

  const read = async (deliveryId: string): Promise<Row> => {
    const [row] = await ds.query(
      `SELECT d.status, d.next_attempt_at::text, d.locked_until::text, d.completed_at::text,
              e.disabled
         FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id WHERE d.id = $1`,
      [deliveryId],
    );
    return row;
  };

  async function run(steps: Step[]) {
    const endpoint = await client.createEndpoint('http://127.0.0.1:9/hook', [
      'model.step',
    ]);
    try {
      const event = await client.publish('model.step', { n: 1 });
      const [{ id }] = await ds.query(
        'SELECT id FROM deliveries WHERE event_id = $1',
        [event.id],
      );
      const model: Model = {
        status: 'pending',
        scheduled: 0,
        attempts: 0,
        disabled: false,
        hasNext: true,
      };
      const history: string[] = [];
      for (const s of steps) {
        history.push(
          s.kind === 'enable' ? 'enable' : `${s.trigger}:${s.outcome}`,
        );
        const before = await read(id);
        const { claimed } = apply(model, s);
        if (s.kind === 'enable') {
          await client
            .api()
            .post(`/v1/endpoints/${endpoint.id}/enable`)
            .set(client.auth)
            .expect(200);
        } else {
          const claim = await ds.transaction((m) =>
            claimDelivery(m, id, s.trigger, LEASE_MS, SCHEDULE_MS.length),
          );
          expect({ history, kind: claim.kind }).toEqual({
            history,
            kind: claimed ? 'claimed' : 'skipped',
          });
          if (claim.kind === 'claimed') {
            // NOTE: as the worker does: a disabled endpoint gets no request.
            if (before.disabled) await outcomes.recordDisabled(claim.claim);
            else await outcomes.record(claim.claim, sent(s.outcome));
          }
        }
        const after = await read(id);
        const final = model.status !== 'pending';
        expect({ history, row: after }).toEqual({
          history,
          row: {
            status: model.status,
            next_attempt_at: model.hasNext ? expect.any(String) : null,
            locked_until: null,
            completed_at: final ? expect.any(String) : null,
            disabled: model.disabled,
          },
        });
        const manualLeftAlone =
          s.kind === 'attempt' &&
          s.trigger === 'manual' &&
          (before.disabled || s.outcome !== 'ok');
        if (manualLeftAlone) {
          expect({ history, next: after.next_attempt_at }).toEqual({
            history,
            next: before.next_attempt_at,
          });
        }
      }
      const attempts: { number: number; status: string; trigger: string }[] =
        await ds.query(
          `SELECT number, status, trigger FROM delivery_attempts
            WHERE delivery_id = $1 ORDER BY number`,
          [id],
        );
      expect({ history, attempts: attempts.map((a) => a.number) }).toEqual({
        history,
        attempts: Array.from({ length: model.attempts }, (_, i) => i + 1),
      });
      expect(attempts.filter((a) => a.status === 'in_progress')).toEqual([]);
      expect(attempts.filter((a) => a.trigger === 'scheduled')).toHaveLength(
        model.scheduled,
      );
    } finally {
      // NOTE: deletes the delivery (cascade): the jobs its steps queued find nothing later.
      await client
        .api()
        .delete(`/v1/endpoints/${endpoint.id}`)
        .set(client.auth)
        .expect(204);
    }
  }

  it('follows the model for any sequence of attempts and outcomes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), run),
      { numRuns: 60 },
    );
  });

  it('gives a delivery all its scheduled attempts, whatever manual attempts came between', async () => {
    await run([
      { kind: 'attempt', trigger: 'scheduled', outcome: 'error' },
      { kind: 'attempt', trigger: 'manual', outcome: 'error' },
      { kind: 'attempt', trigger: 'manual', outcome: 'timeout' },
      { kind: 'attempt', trigger: 'scheduled', outcome: 'error' },
      { kind: 'attempt', trigger: 'scheduled', outcome: 'timeout' },
      { kind: 'attempt', trigger: 'scheduled', outcome: 'ok' },
    ]);
  });

  it('keeps the next scheduled attempt of a pending delivery through a manual 410', async () => {
    await run([
      { kind: 'attempt', trigger: 'scheduled', outcome: 'error' },
      { kind: 'attempt', trigger: 'manual', outcome: 'gone' },
      { kind: 'enable' },
      { kind: 'attempt', trigger: 'scheduled', outcome: 'ok' },
    ]);
  });
});
