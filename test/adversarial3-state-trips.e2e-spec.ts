/**
 * Adversarial, round 3 (state and concurrency): one trip hit by many delays and arrivals at
 * once, through the HTTP API. Each committed request must leave exactly one event (and one
 * delivery per subscribed endpoint) carrying the trip state that request produced; refused
 * ones none; and the trip's history, read newest first, must end in the trip's final state.
 */
import fc from 'fast-check';
import request, { Response } from 'supertest';
import { Tenant, createTenant, tripBody } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { failOnProcessCrashes } from './support/process-crashes';

/** The path a supertest response was requested with (`req` is missing from its types). */
const pathOf = (res: unknown) => (res as { req: { path: string } }).req.path;

jest.setTimeout(90_000);

describe('adversarial3 state: a trip under concurrent delays and arrivals', () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let tenant: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    tenant = await createTenant(svc, 'adv3-state-trips');
    await request(svc.url)
      .post('/v1/endpoints')
      .set(tenant.auth)
      .send({ url: receiver.url, eventTypes: ['trip.delayed', 'trip.arrived'] })
      .expect(201);
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);

  async function newTrip(): Promise<string> {
    const res = await api()
      .post('/v1/trips')
      .set(tenant.auth)
      .send(tripBody())
      .expect(201);
    return res.body.id;
  }

  const delay = (tripId: string, minutes: number, reason = 'fog') =>
    api()
      .post(`/v1/trips/${tripId}/delays`)
      .set(tenant.auth)
      .send({ minutes, reason });

  const arrive = (tripId: string) =>
    api().post(`/v1/trips/${tripId}/arrival`).set(tenant.auth).send();

  /** Every event of the trip, newest first, as the list pages them. */
  async function eventsOf(tripId: string): Promise<any[]> {
    const all: any[] = [];
    let cursor: string | null = null;
    do {
      const res: Response = await api()
        .get('/v1/events')
        .query({ tripId, limit: 100, ...(cursor ? { cursor } : {}) })
        .set(tenant.auth)
        .expect(200);
      all.push(...res.body.data);
      cursor = res.body.nextCursor;
    } while (cursor);
    return all;
  }

  it('should give each concurrent delay an event with the state it produced, and list the final state newest', async () => {
    const tripId = await newTrip();
    const minutes = Array.from({ length: 24 }, (_, i) => i + 1);
    const answers = await Promise.all(
      minutes.map((m) => delay(tripId, m, `r${m}`)),
    );
    expect(answers.map((a) => a.status)).toEqual(minutes.map(() => 201));

    const total = minutes.reduce((a, b) => a + b, 0);
    const trip = (
      await api().get(`/v1/trips/${tripId}`).set(tenant.auth).expect(200)
    ).body;
    expect(trip.delayMinutesTotal).toBe(total);
    expect(trip.status).toBe('delayed');

    // No lost update: the totals the answers report are the prefix sums of a serial order.
    const byTotal = [...answers].sort(
      (a, b) => a.body.trip.delayMinutesTotal - b.body.trip.delayMinutesTotal,
    );
    let running = 0;
    for (const a of byTotal) {
      running += a.body.delay.minutes;
      expect(a.body.trip.delayMinutesTotal).toBe(running);
      // The event carries exactly the trip the delay produced.
      expect(a.body.event.payload.trip).toEqual(a.body.trip);
      expect(a.body.event.deliveries).toBe(1);
    }

    // The final state is the one the last delay produced...
    const last = byTotal[byTotal.length - 1].body;
    expect(trip).toEqual(last.trip);
    const events = await eventsOf(tripId);
    expect(events).toHaveLength(minutes.length + 1);
    // ...and, in commit order (the totals), neither the trip's updatedAt nor the events'
    // createdAt go back: the trip's history read newest first starts with the final state.
    const violations: string[] = [];
    if (events[0].id !== last.event.id)
      violations.push(
        `newest event ${events[0].createdAt} carries total ${events[0].payload.trip.delayMinutesTotal}, not the final ${total} (its event: ${last.event.createdAt})`,
      );
    for (let i = 1; i < byTotal.length; i++) {
      const before = byTotal[i - 1].body;
      const after = byTotal[i].body;
      if (Date.parse(after.trip.updatedAt) < Date.parse(before.trip.updatedAt))
        violations.push(
          `total ${after.trip.delayMinutesTotal} has updatedAt ${after.trip.updatedAt} < ${before.trip.updatedAt} of total ${before.trip.delayMinutesTotal}`,
        );
      if (
        Date.parse(after.event.createdAt) < Date.parse(before.event.createdAt)
      )
        violations.push(
          `event of total ${after.trip.delayMinutesTotal} created ${after.event.createdAt} < ${before.event.createdAt} of total ${before.trip.delayMinutesTotal}`,
        );
    }
    expect(violations).toEqual([]);

    // One webhook per event, each once.
    await eventually(
      () =>
        minutes.every(
          (_, i) =>
            receiver.received.filter(
              (r) => r.headers['webhook-id'] === answers[i].body.event.id,
            ).length === 1,
        ),
      'one webhook per delay',
    );
  });

  it('should keep trip.arrived the newest event when a delay races an arrival', async () => {
    // fast-check picks how many delays are sent around one arrival and in what order; every
    // committed request must have its event, the refused ones none, and the history must end
    // in the final state (arrived, with the total of the delays that committed before it).
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 43_200 }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.nat(8),
        fc.nat(2),
        async (delays, arrivalAt, extraArrivals) => {
          const tripId = await newTrip();
          const calls: (() => request.Test)[] = delays.map(
            (m) => () => delay(tripId, m),
          );
          const arrivals = 1 + extraArrivals;
          for (let i = 0; i < arrivals; i++)
            calls.splice(Math.min(arrivalAt + i, calls.length), 0, () =>
              arrive(tripId),
            );
          const answers = await Promise.all(calls.map((call) => call()));
          const arrived = answers.filter(
            (a) => pathOf(a).endsWith('/arrival') && a.status === 200,
          );
          const refusedArrivals = answers.filter(
            (a) => pathOf(a).endsWith('/arrival') && a.status !== 200,
          );
          const delayed = answers.filter(
            (a) => pathOf(a).endsWith('/delays') && a.status === 201,
          );
          const refusedDelays = answers.filter(
            (a) => pathOf(a).endsWith('/delays') && a.status !== 201,
          );
          expect(arrived).toHaveLength(1);
          for (const a of refusedArrivals) expect(a.status).toBe(409);
          for (const a of refusedDelays) expect(a.status).toBe(409);

          const total = delayed.reduce((s, a) => s + a.body.delay.minutes, 0);
          const trip = (
            await api().get(`/v1/trips/${tripId}`).set(tenant.auth).expect(200)
          ).body;
          expect(trip.status).toBe('arrived');
          expect(trip.delayMinutesTotal).toBe(total);
          expect(arrived[0].body).toEqual(trip);

          const events = await eventsOf(tripId);
          const types = events.map((e) => e.type).sort();
          expect(types).toEqual(
            [
              'trip.arrived',
              'trip.created',
              ...delayed.map(() => 'trip.delayed'),
            ].sort(),
          );
          // The newest event is the arrival, carrying the final trip (every delay that
          // committed did so before the arrival: later ones were refused).
          const arrivedEvent = events.find((e) => e.type === 'trip.arrived');
          expect({
            newest: events[0].type,
            arrivedAt: arrivedEvent.createdAt,
            tripUpdatedAt: trip.updatedAt,
            delaysAt: delayed.map((a) => a.body.event.createdAt),
          }).toEqual({
            newest: 'trip.arrived',
            arrivedAt: arrivedEvent.createdAt,
            tripUpdatedAt: trip.updatedAt,
            delaysAt: delayed.map((a) => a.body.event.createdAt),
          });
          expect(events[0].payload.trip).toEqual(trip);
          // Every delay's event carries its own answer's trip.
          for (const a of delayed) {
            const event = events.find((e) => e.id === a.body.event.id);
            expect(event.payload.trip).toEqual(a.body.trip);
            expect(a.body.trip.delayMinutesTotal).toBeLessThanOrEqual(total);
          }
          // One delivery per committed event of a subscribed type; none for the refused.
          const deliveries = await svc.dataSource.query(
            `SELECT count(*)::int AS n FROM deliveries d JOIN events e ON e.id = d.event_id
              WHERE e.trip_id = $1`,
            [tripId],
          );
          expect(deliveries[0].n).toBe(delayed.length + 1);
        },
      ),
      { numRuns: 25 },
    );
  });
});
